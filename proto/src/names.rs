//! The names people type for the `station.v1` enums: one table per enum, read by the
//! agent's command line (and anything else that takes an enum as text).
//!
//! A value is accepted under three spellings: its short name (`follow-up`, `dibao-marginal`:
//! the proto name without the enum's prefix, lower case, `-` for `_`), its proto name as
//! prost knows it (`VISIT_KIND_FOLLOW_UP`), and for categories the Chinese names social
//! workers use (`低保`, `高龄`, `空巢` …).
//!
//! Invariants: every specified value of an enum has exactly one short name and the short
//! names are unique; the `*_UNSPECIFIED` value has none and is never parsed, under any
//! spelling; matching is exact (no trimming, case-sensitive), so the accepted spellings
//! are exactly those listed.

use crate::v1::{
    ActivityKind, CaseSource, Category, Gender, NoteKind, ResourceKind, ReviewSubject, Tier,
    TrainingKind, VisitKind,
};

/// A `station.v1` enum with the names people type for it.
pub trait Named: Copy + Eq + Sized + Send + Sync + 'static {
    /// Every specified value with its short name, in proto order.
    const NAMES: &'static [(&'static str, Self)];
    /// Further spellings (Chinese names) with the value each stands for.
    const ALIASES: &'static [(&'static str, Self)];

    /// The value prost knows by this proto name, `*_UNSPECIFIED` included.
    fn from_proto_name(name: &str) -> Option<Self>;
}

/// Reads a value written as its short name, an alias, or its proto name; `None` for any
/// other text and for the `*_UNSPECIFIED` value.
pub fn parse<E: Named>(text: &str) -> Option<E> {
    E::NAMES
        .iter()
        .chain(E::ALIASES)
        .find(|(name, _)| *name == text)
        .map(|&(_, value)| value)
        .or_else(|| {
            E::from_proto_name(text).filter(|value| E::NAMES.iter().any(|(_, v)| v == value))
        })
}

/// The short name of a specified value; `None` for `*_UNSPECIFIED`.
pub fn short_name<E: Named>(value: E) -> Option<&'static str> {
    E::NAMES
        .iter()
        .find(|(_, v)| *v == value)
        .map(|&(name, _)| name)
}

/// The short names of an enum, in proto order: the list to offer in help and errors.
pub fn short_names<E: Named>() -> impl Iterator<Item = &'static str> {
    E::NAMES.iter().map(|&(name, _)| name)
}

macro_rules! named {
    ($enum:ident { $($variant:ident => $short:literal),+ $(,)? }
     $(aliases { $($alias:literal => $aliased:ident),+ $(,)? })?) => {
        impl $crate::names::Named for $enum {
            const NAMES: &'static [(&'static str, Self)] = &[$(($short, $enum::$variant)),+];
            const ALIASES: &'static [(&'static str, Self)] = &[$($(($alias, $enum::$aliased)),+)?];

            fn from_proto_name(name: &str) -> Option<Self> {
                $enum::from_str_name(name)
            }
        }
    };
}

/// Declares the names of an enum: `named!(Enum { Variant => "short", … }
/// aliases { "别名" => Variant, … })`. An enum that belongs to one event kind
/// is named beside that kind, in [`crate::kinds`].
pub(crate) use named;

named!(Tier { HighRisk => "high-risk", Key => "key", General => "general" });
named!(Category {
    Dibao => "dibao",
    DibaoMarginal => "dibao-marginal",
    Tekun => "tekun",
    Orphan => "orphan",
    DeFactoOrphan => "de-facto-orphan",
    ChildInDifficulty => "child-in-difficulty",
    LeftBehindChild => "left-behind-child",
    Disabled => "disabled",
    Elderly => "elderly",
    Other => "other",
} aliases {
    "低保" => Dibao,
    "低保边缘" => DibaoMarginal,
    "特困" => Tekun,
    "孤儿" => Orphan,
    "事实无人抚养儿童" => DeFactoOrphan,
    "困境儿童" => ChildInDifficulty,
    "留守儿童" => LeftBehindChild,
    "残疾人" => Disabled,
    "高龄" => Elderly,
    "空巢" => Elderly,
    "失能" => Elderly,
    "老人" => Elderly,
    "其他" => Other,
});
named!(Gender { Male => "male", Female => "female" });
named!(CaseSource { Request => "request", Outreach => "outreach", Referral => "referral" });
named!(NoteKind {
    Plan => "plan",
    Intervention => "intervention",
    Review => "review",
    Supervision => "supervision",
});
named!(VisitKind {
    Home => "home",
    Assessment => "assessment",
    Verification => "verification",
    FollowUp => "follow-up",
    Phone => "phone",
});
named!(ActivityKind {
    PartyPublicWelfare => "party-public-welfare",
    Clinic => "clinic",
    ChildCare => "child-care",
    ElderlyCare => "elderly-care",
    DisabilitySupport => "disability-support",
    PolicyPublicity => "policy-publicity",
    Cultural => "cultural",
    Other => "other",
});
named!(ResourceKind { Cash => "cash", InKind => "in-kind", Service => "service", Policy => "policy" });
named!(TrainingKind {
    Training => "training",
    Supervision => "supervision",
    CoLearning => "co-learning",
});
named!(ReviewSubject {
    TierChange => "tier-change",
    CasePlan => "case-plan",
    Closure => "closure",
} aliases {
    "分档调整" => TierChange,
    "服务计划" => CasePlan,
    "结案" => Closure,
});

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks the invariants of one enum's table against what prost generated.
    fn table_keeps_its_invariants<E>(prefix: &str)
    where
        E: Named + TryFrom<i32> + std::fmt::Debug,
    {
        // Every value prost knows, except 0 (unspecified), has a short name.
        let known: Vec<E> = (1..256).filter_map(|n| E::try_from(n).ok()).collect();
        assert_eq!(known.len(), E::NAMES.len(), "{prefix}: one name per value");
        for value in known {
            let short = short_name(value).unwrap_or_else(|| panic!("{value:?} has no name"));
            assert_eq!(parse::<E>(short), Some(value));
            let proto = format!("{prefix}{}", short.to_uppercase().replace('-', "_"));
            assert_eq!(E::from_proto_name(&proto), Some(value), "{proto}");
            assert_eq!(parse::<E>(&proto), Some(value), "{proto}");
        }
        let mut names: Vec<&str> = short_names::<E>().collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), E::NAMES.len(), "{prefix}: unique short names");
        let unspecified = format!("{prefix}UNSPECIFIED");
        assert!(E::from_proto_name(&unspecified).is_some());
        assert_eq!(parse::<E>(&unspecified), None, "{unspecified}");
        assert_eq!(parse::<E>("unspecified"), None);
        assert_eq!(parse::<E>(""), None);
    }

    #[test]
    fn every_table_names_every_specified_value() {
        table_keeps_its_invariants::<Tier>("TIER_");
        table_keeps_its_invariants::<Category>("CATEGORY_");
        table_keeps_its_invariants::<Gender>("GENDER_");
        table_keeps_its_invariants::<CaseSource>("CASE_SOURCE_");
        table_keeps_its_invariants::<NoteKind>("NOTE_KIND_");
        table_keeps_its_invariants::<VisitKind>("VISIT_KIND_");
        table_keeps_its_invariants::<ActivityKind>("ACTIVITY_KIND_");
        table_keeps_its_invariants::<ResourceKind>("RESOURCE_KIND_");
        table_keeps_its_invariants::<TrainingKind>("TRAINING_KIND_");
        table_keeps_its_invariants::<ReviewSubject>("REVIEW_SUBJECT_");
    }

    #[test]
    fn categories_take_their_chinese_names() {
        assert_eq!(parse("低保"), Some(Category::Dibao));
        assert_eq!(parse("低保边缘"), Some(Category::DibaoMarginal));
        assert_eq!(parse("事实无人抚养儿童"), Some(Category::DeFactoOrphan));
        for elderly in ["elderly", "高龄", "空巢", "失能", "老人"] {
            assert_eq!(parse(elderly), Some(Category::Elderly), "{elderly}");
        }
        assert_eq!(parse("其他"), Some(Category::Other));
    }

    #[test]
    fn matching_is_exact() {
        assert_eq!(parse::<VisitKind>("follow-up"), Some(VisitKind::FollowUp));
        for bad in [
            "Follow-up",
            "follow_up",
            " follow-up",
            "followup",
            "visit_kind_follow_up",
        ] {
            assert_eq!(parse::<VisitKind>(bad), None, "{bad:?}");
        }
        assert_eq!(parse::<Category>("低保 "), None);
    }
}
