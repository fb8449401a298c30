//! The names of the kernel's reset reasons (`enum sk_rst_reason`, Linux 6.10 and later), by
//! value: the reason `tcp:tcp_send_reset` carries is a number whose meaning differs between
//! kernel versions, so the names come from the traced kernel's BTF (and travel in recordings).
//! Also the names of the errnos a socket's close reports.

use std::sync::Arc;

/// The kernel's reset reasons by value, named as tcptrace shows them: `SK_RST_REASON_` dropped,
/// lower case (`tcp_keepalive_timeout`). Empty for a kernel without them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResetReasons {
    /// Index: the enum's value.
    names: Arc<[String]>,
}

const PREFIX: &str = "SK_RST_REASON_";
/// More values than the kernel will ever have: a corrupt BTF or recording allocates no more.
const MAX_REASONS: usize = 1024;

impl ResetReasons {
    /// From the enum's (name, value) pairs. Values out of range, and the `MAX` end marker, are
    /// left out.
    pub fn from_enum(values: &[(String, i64)]) -> Self {
        let mut names: Vec<String> = Vec::new();
        for (name, value) in values {
            let Ok(index) = usize::try_from(*value) else {
                continue;
            };
            if index >= MAX_REASONS || name == "SK_RST_REASON_MAX" {
                continue;
            }
            if names.len() <= index {
                names.resize(index + 1, String::new());
            }
            names[index] = name
                .strip_prefix(PREFIX)
                .unwrap_or(name)
                .to_ascii_lowercase();
        }
        Self {
            names: names.into(),
        }
    }

    /// From names already in tcptrace's form, by value (as a recording keeps them).
    pub fn from_names(names: Vec<String>) -> Self {
        let mut names = names;
        names.truncate(MAX_REASONS);
        Self {
            names: names.into(),
        }
    }

    /// The names by value, as a recording keeps them.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The name of reason `value`, if the kernel named it.
    pub fn name(&self, value: u16) -> Option<&str> {
        self.names
            .get(usize::from(value))
            .map(String::as_str)
            .filter(|n| !n.is_empty())
    }

    /// The value named `name` (tcptrace's form).
    pub fn value(&self, name: &str) -> Option<u16> {
        self.names
            .iter()
            .position(|n| n == name)
            .and_then(|i| u16::try_from(i).ok())
    }
}

/// The name of an errno a close reports, as `<errno.h>` spells it (`ETIMEDOUT`); `errno N` for
/// one not listed here.
pub fn errno_name(errno: u8) -> String {
    let name = match errno {
        1 => "EPERM",
        13 => "EACCES",
        32 => "EPIPE",
        71 => "EPROTO",
        90 => "EMSGSIZE",
        92 => "ENOPROTOOPT",
        100 => "ENETDOWN",
        101 => "ENETUNREACH",
        103 => "ECONNABORTED",
        104 => "ECONNRESET",
        110 => "ETIMEDOUT",
        111 => "ECONNREFUSED",
        112 => "EHOSTDOWN",
        113 => "EHOSTUNREACH",
        _ => return format!("errno {errno}"),
    };
    name.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, i64)]) -> Vec<(String, i64)> {
        list.iter().map(|(n, v)| ((*n).to_owned(), *v)).collect()
    }

    #[test]
    fn names_come_from_the_enum_by_value() {
        let reasons = ResetReasons::from_enum(&pairs(&[
            ("SK_RST_REASON_NOT_SPECIFIED", 0),
            ("SK_RST_REASON_TCP_KEEPALIVE_TIMEOUT", 15),
            ("SK_RST_REASON_MAX", 25),
            ("SK_RST_REASON_NEGATIVE", -1),
        ]));
        assert_eq!(reasons.name(0), Some("not_specified"));
        assert_eq!(reasons.name(15), Some("tcp_keepalive_timeout"));
        assert_eq!(reasons.value("tcp_keepalive_timeout"), Some(15));
        // Gaps, the end marker and values past the list have no name.
        assert_eq!(reasons.name(3), None);
        assert_eq!(reasons.name(25), None);
        assert_eq!(reasons.name(400), None);
        assert_eq!(reasons.names().len(), 16);
        assert!(ResetReasons::default().is_empty());
        assert_eq!(ResetReasons::default().name(0), None);
    }

    #[test]
    fn absurd_values_allocate_nothing() {
        let reasons = ResetReasons::from_enum(&pairs(&[("SK_RST_REASON_X", i64::MAX)]));
        assert!(reasons.is_empty());
    }

    #[test]
    fn errnos_by_name() {
        assert_eq!(errno_name(110), "ETIMEDOUT");
        assert_eq!(errno_name(111), "ECONNREFUSED");
        assert_eq!(errno_name(7), "errno 7");
    }
}
