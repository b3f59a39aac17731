//! `uniffi-bindgen`: generates the Kotlin, Swift and Python bindings of
//! station-mobile from the built library, with the library's exact uniffi version.

fn main() {
    uniffi::uniffi_bindgen_main()
}
