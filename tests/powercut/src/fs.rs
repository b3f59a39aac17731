//! The FUSE side: answers the kernel's requests from the live image, and turns
//! `FSYNC` and `FSYNCDIR` into [`Images::sync`].
//!
//! What the kernel sends for what a program calls (FUSE without writeback
//! cache, which is how this filesystem mounts):
//! - `write`/`pwrite` → `WRITE`, one or more, before the call returns: the
//!   live image holds every byte written;
//! - `fsync`/`fdatasync` of a file → `FSYNC` (datasync flag set or not);
//!   of a directory → `FSYNCDIR`;
//! - `sync_file_range` → nothing: the kernel only starts and waits for
//!   writeback of its own dirty pages, and a FUSE file without writeback
//!   cache has none. This is what sled 0.34's `flush()` ends in, so a flush
//!   alone makes nothing durable here, as on a disk without battery-backed
//!   cache;
//! - `close` → `FLUSH` and `RELEASE`, which make nothing durable;
//! - `flock` → handled by the kernel, never sent (no lock capability is
//!   asked for);
//! - `ftruncate`, `O_TRUNC`, `chmod` → `SETATTR`.
//!
//! Invariants: every request is answered from [`Images`] under its lock, so
//! a power cut ([`Images::cut`]) never sees half an operation; a sync held
//! at a planned cut ([`Images::stall_at_sync`]) holds every request after
//! it, so nothing a program does after that moment reaches either image.

use std::ffi::OsStr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    FileAttr, FileType, Filesystem, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyWrite, Request, TimeOrNow,
};

use crate::image::{Attr, Errno, Images};

/// How long the kernel may keep names and attributes: every change goes
/// through this mount, so its caches never go stale while it is mounted, and
/// a power cut unmounts, which drops them.
const TTL: Duration = Duration::from_secs(1);

/// `RENAME_NOREPLACE` of `renameat2`.
const RENAME_NOREPLACE: u32 = 1;

/// The disk's state, shared by the filesystem of its mount and the test.
#[derive(Debug, Default)]
pub struct Shared {
    /// The two images.
    images: Mutex<Images>,
    /// Signalled when a sync stalls at a planned cut, and when it is released.
    stall: Condvar,
}

impl Shared {
    /// The images, locked.
    pub fn images(&self) -> MutexGuard<'_, Images> {
        // A panic while holding the lock leaves the images as consistent as
        // any single operation does (each is made whole or not at all).
        self.images.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits up to `timeout` for a sync to stall at the planned cut.
    pub fn wait_stalled(&self, timeout: Duration) -> bool {
        let images = self.images();
        let (images, _) = self
            .stall
            .wait_timeout_while(images, timeout, |images| !images.is_stalled())
            .unwrap_or_else(PoisonError::into_inner);
        images.is_stalled()
    }

    /// Releases a stalled sync (it fails) and forgets the planned cut.
    pub fn release(&self) {
        self.images().release();
        self.stall.notify_all();
    }
}

/// The filesystem one mount serves, over images shared with the test.
#[derive(Debug)]
pub struct PowerCutFs {
    /// The disk's state; the test holds it too, to cut the power.
    shared: Arc<Shared>,
}

impl PowerCutFs {
    /// A filesystem serving `shared`.
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    fn images(&self) -> MutexGuard<'_, Images> {
        self.shared.images()
    }

    /// `FSYNC` and `FSYNCDIR`. At a planned cut, the sync (and with it this
    /// single-threaded filesystem) waits for the cut and fails: nothing
    /// after that moment reaches the disk.
    fn sync(&self, ino: u64, reply: ReplyEmpty) {
        let mut images = self.images();
        if images.begin_sync() {
            reply_empty(images.sync(ino), reply);
            return;
        }
        self.shared.stall.notify_all();
        while images.is_stalled() {
            images = self
                .shared
                .stall
                .wait(images)
                .unwrap_or_else(PoisonError::into_inner);
        }
        reply.error(libc::EIO);
    }
}

fn file_attr(attr: Attr, uid: u32, gid: u32) -> FileAttr {
    FileAttr {
        ino: attr.ino,
        size: attr.size,
        blocks: attr.size.div_ceil(512),
        atime: attr.mtime,
        mtime: attr.mtime,
        ctime: attr.mtime,
        crtime: UNIX_EPOCH,
        kind: if attr.is_dir {
            FileType::Directory
        } else {
            FileType::RegularFile
        },
        // The mode holds only permission bits, so it fits in 16 bits.
        perm: (attr.mode & 0o7777) as u16,
        nlink: if attr.is_dir { 2 } else { 1 },
        uid,
        gid,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

fn reply_entry(result: Result<Attr, Errno>, req: &Request<'_>, reply: ReplyEntry) {
    match result {
        Ok(attr) => reply.entry(&TTL, &file_attr(attr, req.uid(), req.gid()), 0),
        Err(errno) => reply.error(errno),
    }
}

fn reply_empty(result: Result<(), Errno>, reply: ReplyEmpty) {
    match result {
        Ok(()) => reply.ok(),
        Err(errno) => reply.error(errno),
    }
}

fn offset(offset: i64) -> Result<u64, Errno> {
    u64::try_from(offset).map_err(|_| libc::EINVAL)
}

impl Filesystem for PowerCutFs {
    fn lookup(&mut self, req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        let images = self.images();
        let result = images.lookup(parent, name).and_then(|ino| images.attr(ino));
        reply_entry(result, req, reply);
    }

    fn getattr(&mut self, req: &Request<'_>, ino: u64, _fh: Option<u64>, reply: ReplyAttr) {
        match self.images().attr(ino) {
            Ok(attr) => reply.attr(&TTL, &file_attr(attr, req.uid(), req.gid())),
            Err(errno) => reply.error(errno),
        }
    }

    fn setattr(
        &mut self,
        req: &Request<'_>,
        ino: u64,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<u64>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<u32>,
        reply: ReplyAttr,
    ) {
        let mut images = self.images();
        let result = (|| {
            // Check both before changing either: a refused request changes nothing.
            let attr = images.attr(ino)?;
            if size.is_some() && attr.is_dir {
                return Err(libc::EISDIR);
            }
            if let Some(size) = size {
                images.set_len(ino, size)?;
            }
            if let Some(mode) = mode {
                images.set_mode(ino, mode)?;
            }
            images.attr(ino)
        })();
        match result {
            Ok(attr) => reply.attr(&TTL, &file_attr(attr, req.uid(), req.gid())),
            Err(errno) => reply.error(errno),
        }
    }

    fn mkdir(
        &mut self,
        req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let mut images = self.images();
        let result = images
            .mkdir(parent, name, mode & !umask)
            .and_then(|ino| images.attr(ino));
        reply_entry(result, req, reply);
    }

    fn unlink(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(self.images().remove(parent, name, false), reply);
    }

    fn rmdir(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(self.images().remove(parent, name, true), reply);
    }

    fn rename(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: u32,
        reply: ReplyEmpty,
    ) {
        if flags & !RENAME_NOREPLACE != 0 {
            // RENAME_EXCHANGE and RENAME_WHITEOUT are not modelled.
            reply.error(libc::EINVAL);
            return;
        }
        let no_replace = flags & RENAME_NOREPLACE != 0;
        let result = self
            .images()
            .rename(parent, name, newparent, newname, no_replace);
        reply_empty(result, reply);
    }

    fn open(&mut self, _req: &Request<'_>, ino: u64, _flags: i32, reply: ReplyOpen) {
        match self.images().attr(ino) {
            Ok(_) => reply.opened(0, 0),
            Err(errno) => reply.error(errno),
        }
    }

    fn read(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        at: i64,
        size: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyData,
    ) {
        let result = offset(at).and_then(|at| self.images().read(ino, at, size as usize));
        match result {
            Ok(data) => reply.data(&data),
            Err(errno) => reply.error(errno),
        }
    }

    fn write(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        at: i64,
        data: &[u8],
        _write_flags: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyWrite,
    ) {
        let result = offset(at).and_then(|at| self.images().write(ino, at, data));
        match (result, u32::try_from(data.len())) {
            (Ok(()), Ok(written)) => reply.written(written),
            (Ok(()), Err(_)) => reply.error(libc::EFBIG),
            (Err(errno), _) => reply.error(errno),
        }
    }

    fn flush(&mut self, _req: &Request<'_>, _ino: u64, _fh: u64, _lock: u64, reply: ReplyEmpty) {
        // Closing a file makes nothing durable.
        reply.ok();
    }

    fn release(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        _fh: u64,
        _flags: i32,
        _lock_owner: Option<u64>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn fsync(&mut self, _req: &Request<'_>, ino: u64, _fh: u64, _data: bool, reply: ReplyEmpty) {
        self.sync(ino, reply);
    }

    fn opendir(&mut self, _req: &Request<'_>, ino: u64, _flags: i32, reply: ReplyOpen) {
        match self.images().attr(ino) {
            Ok(attr) if attr.is_dir => reply.opened(0, 0),
            Ok(_) => reply.error(libc::ENOTDIR),
            Err(errno) => reply.error(errno),
        }
    }

    fn readdir(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        at: i64,
        mut reply: ReplyDirectory,
    ) {
        let listed = match (offset(at), self.images().list(ino)) {
            (Ok(at), Ok(listed)) => (at, listed),
            (Err(errno), _) | (_, Err(errno)) => {
                reply.error(errno);
                return;
            }
        };
        let (at, names) = listed;
        let dots = [
            (ino, true, OsStr::new(".").to_owned()),
            (ino, true, OsStr::new("..").to_owned()),
        ];
        // Offsets are positions in this listing, plus one: the kernel asks
        // again from the last offset it was given.
        for (index, (child, is_dir, name)) in dots.into_iter().chain(names).enumerate() {
            let next = index as i64 + 1;
            if (index as u64) < at {
                continue;
            }
            let kind = if is_dir {
                FileType::Directory
            } else {
                FileType::RegularFile
            };
            if reply.add(child, next, kind, &name) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        _fh: u64,
        _flags: i32,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn fsyncdir(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.sync(ino, reply);
    }

    fn create(
        &mut self,
        req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let mut images = self.images();
        let result = images
            .create(parent, name, mode & !umask)
            .and_then(|ino| images.attr(ino));
        match result {
            Ok(attr) => reply.created(&TTL, &file_attr(attr, req.uid(), req.gid()), 0, 0, 0),
            Err(errno) => reply.error(errno),
        }
    }
}
