//! Reporting periods (month, quarter, year, by service date) and the
//! indicators counted in them.
//!
//! Invariant: a date belongs to exactly one month, one quarter and one year,
//! and [`Period::of_date`] names them; keys written with [`Period::key`] sort
//! months of one year in order.

use std::fmt;
use std::str::FromStr;

use chrono::{Datelike as _, NaiveDate};
use serde::{Deserialize, Serialize};

/// The kind of a reporting period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeriodKind {
    /// A calendar month.
    Month,
    /// A calendar quarter.
    Quarter,
    /// A calendar year.
    Year,
}

impl PeriodKind {
    /// Every kind, shortest first.
    pub const ALL: [PeriodKind; 3] = [PeriodKind::Month, PeriodKind::Quarter, PeriodKind::Year];

    /// The name used in configuration: `month`, `quarter`, `year`.
    pub fn name(self) -> &'static str {
        match self {
            PeriodKind::Month => "month",
            PeriodKind::Quarter => "quarter",
            PeriodKind::Year => "year",
        }
    }
}

/// One month, quarter or year: `2026-11`, `2026-Q4`, `2026`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Period {
    /// Month, quarter or year.
    kind: PeriodKind,
    /// The calendar year.
    year: i32,
    /// Month 1–12, quarter 1–4, or 0 for a year.
    index: u32,
}

/// A period that is not written `YYYY-MM`, `YYYY-Qn` or `YYYY`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("period `{0}` must be written YYYY-MM (month), YYYY-Qn (quarter) or YYYY (year)")]
pub struct BadPeriod(pub String);

impl Period {
    /// The month `year-month`, if `month` is 1–12.
    pub fn month(year: i32, month: u32) -> Option<Self> {
        (1..=12).contains(&month).then_some(Self {
            kind: PeriodKind::Month,
            year,
            index: month,
        })
    }

    /// The quarter `year-Qquarter`, if `quarter` is 1–4.
    pub fn quarter(year: i32, quarter: u32) -> Option<Self> {
        (1..=4).contains(&quarter).then_some(Self {
            kind: PeriodKind::Quarter,
            year,
            index: quarter,
        })
    }

    /// The year.
    pub fn year(year: i32) -> Self {
        Self {
            kind: PeriodKind::Year,
            year,
            index: 0,
        }
    }

    /// The month, quarter and year `date` falls in.
    pub fn of_date(date: NaiveDate) -> [Period; 3] {
        let (year, month) = (date.year(), date.month());
        [
            Self {
                kind: PeriodKind::Month,
                year,
                index: month,
            },
            Self {
                kind: PeriodKind::Quarter,
                year,
                index: (month - 1) / 3 + 1,
            },
            Self::year(year),
        ]
    }

    /// Month, quarter or year.
    pub fn kind(&self) -> PeriodKind {
        self.kind
    }

    /// The first day of the period.
    pub fn first_day(&self) -> NaiveDate {
        let month = match self.kind {
            PeriodKind::Month => self.index,
            PeriodKind::Quarter => (self.index - 1) * 3 + 1,
            PeriodKind::Year => 1,
        };
        NaiveDate::from_ymd_opt(self.year, month, 1).unwrap_or(NaiveDate::MIN)
    }

    /// The last month of the period.
    pub fn last_month(&self) -> Period {
        let month = match self.kind {
            PeriodKind::Month => self.index,
            PeriodKind::Quarter => self.index * 3,
            PeriodKind::Year => 12,
        };
        Self {
            kind: PeriodKind::Month,
            year: self.year,
            index: month,
        }
    }

    /// The last day of the period.
    pub fn last_day(&self) -> NaiveDate {
        let last = self.last_month();
        let (year, month) = if last.index == 12 {
            (last.year + 1, 1)
        } else {
            (last.year, last.index + 1)
        };
        NaiveDate::from_ymd_opt(year, month, 1)
            .and_then(|d| d.pred_opt())
            .unwrap_or(NaiveDate::MAX)
    }

    /// The period as written in keys and answers: `2026-11`, `2026-Q4`, `2026`.
    pub fn key(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            PeriodKind::Month => write!(f, "{:04}-{:02}", self.year, self.index),
            PeriodKind::Quarter => write!(f, "{:04}-Q{}", self.year, self.index),
            PeriodKind::Year => write!(f, "{:04}", self.year),
        }
    }
}

impl FromStr for Period {
    type Err = BadPeriod;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadPeriod(s.chars().take(20).collect());
        let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        let year = |t: &str| -> Result<i32, BadPeriod> {
            if t.len() == 4 && digits(t) {
                t.parse().map_err(|_| bad())
            } else {
                Err(bad())
            }
        };
        match s.split_once('-') {
            None => Ok(Self::year(year(s)?)),
            Some((y, rest)) => {
                let y = year(y)?;
                if let Some(q) = rest.strip_prefix('Q').or_else(|| rest.strip_prefix('q')) {
                    if q.len() != 1 || !digits(q) {
                        return Err(bad());
                    }
                    Self::quarter(y, q.parse().map_err(|_| bad())?).ok_or_else(bad)
                } else if rest.len() == 2 && digits(rest) {
                    Self::month(y, rest.parse().map_err(|_| bad())?).ok_or_else(bad)
                } else {
                    Err(bad())
                }
            }
        }
    }
}

/// The unit an indicator is reported and targeted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// A count.
    Count,
    /// Hours (counted in minutes).
    Hour,
    /// Yuan (counted in fen).
    Yuan,
}

impl Unit {
    /// The unit's name in answers.
    pub fn name(self) -> &'static str {
        match self {
            Unit::Count => "count",
            Unit::Hour => "hour",
            Unit::Yuan => "yuan",
        }
    }

    /// The unit counters hold: `count`, `minute`, `fen`.
    pub fn raw_name(self) -> &'static str {
        match self {
            Unit::Count => "count",
            Unit::Hour => "minute",
            Unit::Yuan => "fen",
        }
    }

    /// Raw units in one unit.
    pub fn raw_per_unit(self) -> i64 {
        match self {
            Unit::Count => 1,
            Unit::Hour => 60,
            Unit::Yuan => 100,
        }
    }
}

/// An indicator of a station's work, counted by service date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// 入户走访(户次): visits of any kind but phone calls.
    HomeVisits,
    /// 走访户数: distinct cases visited in the period (phone calls excluded).
    HouseholdsVisited,
    /// 电话联系监护人(次): calls to cases' guardians, apart from visits.
    GuardianCalls,
    /// 上门未遇(次): visits that found nobody at home, apart from visits.
    VisitAttempts,
    /// 在册个案: cases open at the end of the period, by the dates of their
    /// opening, closings and reopenings.
    CasesOpen,
    /// 新增个案: cases opened in the period.
    CasesNew,
    /// 结案: cases with a closing dated in the period (each case once).
    CasesClosed,
    /// 小组活动(节): group sessions held.
    GroupSessions,
    /// 社区活动(场): activities held.
    Activities,
    /// 服务人次: activity person-times plus group-session participants.
    PersonTimes,
    /// 志愿者(人次): volunteers of activities.
    Volunteers,
    /// 志愿服务时长: volunteer hours of activities.
    VolunteerHours,
    /// 链接资源(元): cash and in-kind value linked, cases' and community's.
    ResourcesYuan,
    /// 培训督导(次): trainings, supervisions and co-learning sessions.
    Trainings,
}

impl Metric {
    /// Every metric, in report order.
    pub const ALL: [Metric; 14] = [
        Metric::HomeVisits,
        Metric::HouseholdsVisited,
        Metric::GuardianCalls,
        Metric::VisitAttempts,
        Metric::CasesOpen,
        Metric::CasesNew,
        Metric::CasesClosed,
        Metric::GroupSessions,
        Metric::Activities,
        Metric::PersonTimes,
        Metric::Volunteers,
        Metric::VolunteerHours,
        Metric::ResourcesYuan,
        Metric::Trainings,
    ];

    /// The metric's name in configuration, keys and answers.
    pub fn name(self) -> &'static str {
        match self {
            Metric::HomeVisits => "home_visits",
            Metric::HouseholdsVisited => "households_visited",
            Metric::GuardianCalls => "guardian_calls",
            Metric::VisitAttempts => "visit_attempts",
            Metric::CasesOpen => "cases_open",
            Metric::CasesNew => "cases_new",
            Metric::CasesClosed => "cases_closed",
            Metric::GroupSessions => "group_sessions",
            Metric::Activities => "activities",
            Metric::PersonTimes => "person_times",
            Metric::Volunteers => "volunteers",
            Metric::VolunteerHours => "volunteer_hours",
            Metric::ResourcesYuan => "resources_yuan",
            Metric::Trainings => "trainings",
        }
    }

    /// The metric of a name, if known.
    pub fn from_name(name: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.name() == name)
    }

    /// The Chinese label for tables.
    pub fn label(self) -> &'static str {
        match self {
            Metric::HomeVisits => "入户走访(户次)",
            Metric::HouseholdsVisited => "走访户数",
            Metric::GuardianCalls => "电话联系监护人(次)",
            Metric::VisitAttempts => "上门未遇(次)",
            Metric::CasesOpen => "在册个案",
            Metric::CasesNew => "新增个案",
            Metric::CasesClosed => "结案",
            Metric::GroupSessions => "小组活动(节)",
            Metric::Activities => "社区活动(场)",
            Metric::PersonTimes => "服务人次",
            Metric::Volunteers => "志愿者(人次)",
            Metric::VolunteerHours => "志愿服务(小时)",
            Metric::ResourcesYuan => "链接资源(元)",
            Metric::Trainings => "培训督导(次)",
        }
    }

    /// The unit of values and targets.
    pub fn unit(self) -> Unit {
        match self {
            Metric::VolunteerHours => Unit::Hour,
            Metric::ResourcesYuan => Unit::Yuan,
            _ => Unit::Count,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_sits_at_its_own_index_of_all() {
        // The folds keep a station's sums in arrays indexed by `metric as usize`
        // and read them back in `ALL` order.
        for (index, metric) in Metric::ALL.into_iter().enumerate() {
            assert_eq!(metric as usize, index, "{}", metric.name());
            assert_eq!(Metric::from_name(metric.name()), Some(metric));
        }
    }

    #[test]
    fn periods_parse_print_and_bound() {
        let q: Period = "2026-Q4".parse().unwrap();
        assert_eq!(q.to_string(), "2026-Q4");
        assert_eq!(q.first_day().to_string(), "2026-10-01");
        assert_eq!(q.last_day().to_string(), "2026-12-31");
        assert_eq!(q.last_month().to_string(), "2026-12");
        let m: Period = "2024-02".parse().unwrap();
        assert_eq!(m.last_day().to_string(), "2024-02-29");
        let y: Period = "2026".parse().unwrap();
        assert_eq!(
            (y.first_day().to_string(), y.last_day().to_string()),
            ("2026-01-01".into(), "2026-12-31".into())
        );
        for bad in [
            "",
            "26",
            "2026-13",
            "2026-Q5",
            "2026-Q",
            "2026-1",
            "２０２６",
            "2026-Q12",
            "x",
        ] {
            assert!(bad.parse::<Period>().is_err(), "{bad}");
        }
        let date = NaiveDate::from_ymd_opt(2026, 11, 20).unwrap();
        let names: Vec<String> = Period::of_date(date).iter().map(Period::key).collect();
        assert_eq!(names, ["2026-11", "2026-Q4", "2026"]);
    }
}
