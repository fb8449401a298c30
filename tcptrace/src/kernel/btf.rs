//! Struct member offsets from the kernel's BTF (`/sys/kernel/btf/vmlinux`), so that the probe
//! reads the right bytes of `struct sock` (ports, addresses, namespace) on any kernel build;
//! the values of the enums it needs, and how many arguments a tracepoint has.
//!
//! A deliberately small reader of the stable BTF format (include/uapi/linux/btf.h): it walks the
//! type section once and answers "byte offset of member M in struct S", looking through
//! anonymous struct and union members as C does. aya-obj's BTF parser keeps its type table
//! private, and the one BTF crate that exposes it is LGPL, hence this.

use std::{
    collections::{HashMap, HashSet},
    fs, io,
};

use tcptrace_ebpf::{DropLayout, NO_REASON, SockLayout};

use crate::core::reset_reason::ResetReasons;

const BTF_MAGIC: u16 = 0xeb9f;

/// The kernel declares `typedef void (*btf_trace_<name>)(void *, args...)` for every
/// tracepoint: what a BTF-typed tracepoint program attaches to.
const TRACEPOINT_TYPEDEF: &str = "btf_trace_";

const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_TYPEDEF: u32 = 8;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_ENUM64: u32 = 19;

/// A member of a struct or union.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Member {
    name: String,
    type_id: u32,
    bit_offset: u32,
}

#[derive(Clone, Debug, Default)]
struct Composite {
    members: Vec<Member>,
}

/// The structs and unions of a BTF blob, by type id and by name.
#[derive(Debug, Default)]
pub struct Btf {
    composites: HashMap<u32, Composite>,
    by_name: HashMap<String, u32>,
    /// Typedefs and qualifiers: id → the id they refer to.
    aliases: HashMap<u32, u32>,
    /// The `btf_trace_*` typedefs, one per BTF-typed tracepoint: name → the type they name.
    tracepoints: HashMap<String, u32>,
    /// Pointers: id → the id they point to.
    pointers: HashMap<u32, u32>,
    /// Function prototypes: id → number of parameters.
    prototypes: HashMap<u32, usize>,
    /// Named enums: their values, in declaration order.
    enums: HashMap<String, Vec<(String, i64)>>,
}

fn u32_at(data: &[u8], at: usize) -> Option<u32> {
    data.get(at..at + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn string_at(strings: &[u8], offset: u32) -> String {
    let start = offset as usize;
    let Some(rest) = strings.get(start..) else {
        return String::new();
    };
    let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    String::from_utf8_lossy(&rest[..end]).into_owned()
}

impl Btf {
    /// Parses a little-endian BTF blob. `None` when it is not one.
    pub fn parse(data: &[u8]) -> Option<Self> {
        if u16::from_le_bytes([*data.first()?, *data.get(1)?]) != BTF_MAGIC {
            return None;
        }
        let hdr_len = u32_at(data, 4)? as usize;
        let type_off = u32_at(data, 8)? as usize;
        let type_len = u32_at(data, 12)? as usize;
        let str_off = u32_at(data, 16)? as usize;
        let str_len = u32_at(data, 20)? as usize;
        let types = data.get(hdr_len + type_off..hdr_len + type_off + type_len)?;
        let strings = data.get(hdr_len + str_off..hdr_len + str_off + str_len)?;

        let mut btf = Self::default();
        let mut at = 0;
        // Type ids start at 1 (0 is void).
        let mut id = 1u32;
        while at + 12 <= types.len() {
            let name_off = u32_at(types, at)?;
            let info = u32_at(types, at + 4)?;
            let size_or_type = u32_at(types, at + 8)?;
            let vlen = (info & 0xffff) as usize;
            let kind = (info >> 24) & 0x1f;
            let kind_flag = info >> 31 == 1;
            at += 12;
            let trailer = match kind {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
                KIND_ARRAY => 12,
                KIND_STRUCT | KIND_UNION | KIND_DATASEC | KIND_ENUM64 => vlen * 12,
                KIND_ENUM | KIND_FUNC_PROTO => vlen * 8,
                _ => 0,
            };
            match kind {
                KIND_PTR => {
                    btf.pointers.insert(id, size_or_type);
                }
                KIND_FUNC_PROTO => {
                    btf.prototypes.insert(id, vlen);
                }
                KIND_ENUM | KIND_ENUM64 => {
                    let name = string_at(strings, name_off);
                    let stride = if kind == KIND_ENUM { 8 } else { 12 };
                    let mut values = Vec::with_capacity(vlen);
                    for i in 0..vlen {
                        let v = at + i * stride;
                        let low = u32_at(types, v + 4)?;
                        let value = if kind == KIND_ENUM {
                            // Signed unless kind_flag says unsigned; the kernel's are small.
                            if kind_flag {
                                i64::from(low)
                            } else {
                                i64::from(low as i32)
                            }
                        } else {
                            ((u64::from(u32_at(types, v + 8)?) << 32) | u64::from(low)) as i64
                        };
                        values.push((string_at(strings, u32_at(types, v)?), value));
                    }
                    if !name.is_empty() {
                        btf.enums.entry(name).or_insert(values);
                    }
                }
                KIND_STRUCT | KIND_UNION => {
                    let mut members = Vec::with_capacity(vlen);
                    for i in 0..vlen {
                        let m = at + i * 12;
                        let offset = u32_at(types, m + 8)?;
                        members.push(Member {
                            name: string_at(strings, u32_at(types, m)?),
                            type_id: u32_at(types, m + 4)?,
                            // With kind_flag, the top 8 bits are a bitfield size.
                            bit_offset: if kind_flag {
                                offset & 0x00ff_ffff
                            } else {
                                offset
                            },
                        });
                    }
                    let name = string_at(strings, name_off);
                    if !name.is_empty() {
                        btf.by_name.entry(name).or_insert(id);
                    }
                    btf.composites.insert(id, Composite { members });
                }
                // typedef, volatile, const, restrict, type tag: follow to the referred type.
                8..=11 | 18 => {
                    btf.aliases.insert(id, size_or_type);
                    if kind == KIND_TYPEDEF {
                        let name = string_at(strings, name_off);
                        if let Some(tracepoint) = name.strip_prefix(TRACEPOINT_TYPEDEF) {
                            btf.tracepoints.insert(tracepoint.to_owned(), size_or_type);
                        }
                    }
                }
                _ => {}
            }
            at += trailer;
            id += 1;
        }
        Some(btf)
    }

    fn resolve(&self, mut id: u32) -> u32 {
        // Bounded: a malformed blob could loop.
        for _ in 0..32 {
            match self.aliases.get(&id) {
                Some(next) => id = *next,
                None => break,
            }
        }
        id
    }

    /// Bit offset of `member` in composite `id`, searching anonymous members too.
    ///
    /// `searched` holds the composites this lookup has searched already: one searched again
    /// can only fail again (or be a cycle), and without it a corrupt blob whose anonymous
    /// members share or repeat their types has exponentially many paths to search.
    fn member_bits(
        &self,
        id: u32,
        member: &str,
        depth: u32,
        searched: &mut HashSet<u32>,
    ) -> Option<(u32, u32)> {
        let id = self.resolve(id);
        if !searched.insert(id) {
            return None;
        }
        let composite = self.composites.get(&id)?;
        if let Some(m) = composite.members.iter().find(|m| m.name == member) {
            return Some((m.bit_offset, m.type_id));
        }
        if depth > 8 {
            return None;
        }
        composite
            .members
            .iter()
            .filter(|m| m.name.is_empty())
            .find_map(|m| {
                let (bits, type_id) = self.member_bits(m.type_id, member, depth + 1, searched)?;
                Some((m.bit_offset.checked_add(bits)?, type_id))
            })
    }

    /// Byte offset of a member path (`["__sk_common", "skc_net", "net"]`) in struct `name`.
    pub fn offset_of(&self, name: &str, path: &[&str]) -> Option<u32> {
        let mut id = *self.by_name.get(name)?;
        let mut bits = 0;
        for member in path {
            let (member_bits, type_id) = self.member_bits(id, member, 0, &mut HashSet::new())?;
            // A corrupt blob's offsets can add up past u32: no such member then.
            bits = member_bits.checked_add(bits)?;
            id = type_id;
        }
        (bits % 8 == 0).then_some(bits / 8)
    }

    /// Where the probe finds each field it reads. `Err` names the first field this kernel
    /// lacks. The namespace is optional: without `CONFIG_NET_NS`, `skc_net` has no `net`. So is
    /// the cookie (`skc_cookie`, in `struct sock_common` since Linux 4.1, its offset varying
    /// between releases): without it, only the listeners of the start-up census get their owner.
    pub fn sock_layout(&self) -> Result<SockLayout, String> {
        let sock = |path: &[&str]| {
            self.offset_of("sock", path)
                .ok_or_else(|| format!("struct sock has no {}", path.join(".")))
        };
        let common = |field: &str| sock(&["__sk_common", field]);
        let icsk = |field: &str| {
            self.offset_of("inet_connection_sock", &[field])
                .ok_or_else(|| format!("struct inet_connection_sock has no {field}"))
        };
        let netns = sock(&["__sk_common", "skc_net", "net"])
            .ok()
            .zip(self.offset_of("net", &["ns", "inum"]));
        Ok(SockLayout {
            family: common("skc_family")?,
            protocol: sock(&["sk_protocol"])?,
            state: common("skc_state")?,
            num: common("skc_num")?,
            inet_sport: self
                .offset_of("inet_sock", &["inet_sport"])
                .ok_or("struct inet_sock has no inet_sport")?,
            dport: common("skc_dport")?,
            rcv_saddr: common("skc_rcv_saddr")?,
            daddr: common("skc_daddr")?,
            v6_rcv_saddr: common("skc_v6_rcv_saddr")?,
            v6_daddr: common("skc_v6_daddr")?,
            net: netns.map_or(0, |(net, _)| net),
            net_inum: netns.map_or(0, |(_, inum)| inum),
            has_netns: u32::from(netns.is_some()),
            cookie: common("skc_cookie").unwrap_or(0),
            sk_err: sock(&["sk_err"])?,
            sk_err_soft: sock(&["sk_err_soft"])?,
            sk_flags: common("skc_flags")?,
            // The first two flags of `enum sock_flags` since Linux 2.6; read from the BTF when
            // it has them, which it always has.
            sock_dead_bit: self.enum_value("sock_flags", "SOCK_DEAD").unwrap_or(0) as u32,
            sock_keepopen_bit: self.enum_value("sock_flags", "SOCK_KEEPOPEN").unwrap_or(3) as u32,
            icsk_retransmits: icsk("icsk_retransmits")?,
            icsk_probes_out: icsk("icsk_probes_out")?,
            icsk_user_timeout: icsk("icsk_user_timeout")?,
            reset_reason_arg: u32::from(
                self.tracepoint_arguments(RESET_SENT_TRACEPOINT)
                    .is_some_and(|n| n >= 3),
            ),
            _pad: 0,
        })
    }

    /// Whether the kernel has a BTF-typed tracepoint of this name (`btf_trace_<name>`).
    pub fn has_tracepoint(&self, name: &str) -> bool {
        self.tracepoints.contains_key(name)
    }

    /// How many arguments the tracepoint hands its programs: the parameters of its
    /// `btf_trace_<name>` prototype but the first (`void *`, the tracepoint's own data).
    pub fn tracepoint_arguments(&self, name: &str) -> Option<usize> {
        let typedef = *self.tracepoints.get(name)?;
        let pointer = self.resolve(typedef);
        let prototype = self.resolve(*self.pointers.get(&pointer)?);
        self.prototypes.get(&prototype).map(|n| n.saturating_sub(1))
    }

    /// The value of `name` in enum `enumeration`.
    pub fn enum_value(&self, enumeration: &str, name: &str) -> Option<i64> {
        self.enums
            .get(enumeration)?
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
    }

    /// The names of the kernel's reset reasons (`enum sk_rst_reason`, Linux 6.10 and later) by
    /// value, for the reason `tcp:tcp_send_reset` carries: empty when the kernel has none.
    pub fn reset_reasons(&self) -> ResetReasons {
        ResetReasons::from_enum(
            self.enums
                .get("sk_rst_reason")
                .map_or(&[][..], Vec::as_slice),
        )
    }

    /// What the program on `skb:kfree_skb` needs of this kernel but the code ranges (which
    /// come from /proc/kallsyms). `Err` names what is missing: then that program is not loaded.
    pub fn drop_layout(&self) -> Result<DropLayout, String> {
        let reason = |name: &str| {
            self.enum_value("skb_drop_reason", &format!("SKB_DROP_REASON_{name}"))
                .and_then(|value| u32::try_from(value).ok())
        };
        let skb = |field: &str| {
            self.offset_of("sk_buff", &[field])
                .ok_or_else(|| format!("struct sk_buff has no {field}"))
        };
        Ok(DropLayout {
            reason_not_specified: reason("NOT_SPECIFIED")
                .ok_or("enum skb_drop_reason has no SKB_DROP_REASON_NOT_SPECIFIED")?,
            reason_no_socket: reason("NO_SOCKET")
                .ok_or("enum skb_drop_reason has no SKB_DROP_REASON_NO_SOCKET")?,
            // Linux 6.10 and later.
            reason_listen_overflow: reason("TCP_LISTEN_OVERFLOW").unwrap_or(NO_REASON),
            skb_head: skb("head")?,
            skb_network_header: skb("network_header")?,
            skb_transport_header: skb("transport_header")?,
            skb_protocol: skb("protocol")?,
            skb_dev: skb("dev")?,
            dev_net: self
                .offset_of("net_device", &["nd_net", "net"])
                .unwrap_or(0),
            _pad: 0,
            rcv_v4: [0; 2],
            rcv_v6: [0; 2],
        })
    }
}

/// The tracepoint whose third argument is the reset's reason on Linux 6.10 and later.
const RESET_SENT_TRACEPOINT: &str = "tcp_send_reset";

/// Reads the running kernel's BTF.
pub fn read_kernel_btf() -> io::Result<Btf> {
    let data = fs::read("/sys/kernel/btf/vmlinux")?;
    Btf::parse(&data).ok_or_else(|| io::Error::other("/sys/kernel/btf/vmlinux is not BTF"))
}

#[cfg(test)]
mod tests {
    use tcptrace_ebpf::names;

    use super::*;

    /// A tiny BTF blob builder: enough to describe structs with members.
    struct Builder {
        types: Vec<u8>,
        strings: Vec<u8>,
        next_id: u32,
    }

    impl Builder {
        fn new() -> Self {
            Self {
                types: Vec::new(),
                strings: vec![0],
                next_id: 1,
            }
        }
        fn string(&mut self, s: &str) -> u32 {
            if s.is_empty() {
                return 0;
            }
            let at = self.strings.len() as u32;
            self.strings.extend_from_slice(s.as_bytes());
            self.strings.push(0);
            at
        }
        fn push(&mut self, words: &[u32]) -> u32 {
            for w in words {
                self.types.extend_from_slice(&w.to_le_bytes());
            }
            let id = self.next_id;
            self.next_id += 1;
            id
        }
        fn int(&mut self, name: &str, size: u32) -> u32 {
            let n = self.string(name);
            self.push(&[n, KIND_INT << 24, size, size * 8])
        }
        fn ptr(&mut self, to: u32) -> u32 {
            self.push(&[0, 2 << 24, to])
        }
        fn composite(
            &mut self,
            kind: u32,
            name: &str,
            size: u32,
            members: &[(&str, u32, u32)],
        ) -> u32 {
            let n = self.string(name);
            let mut words = vec![n, (kind << 24) | members.len() as u32, size];
            for (name, type_id, bits) in members {
                let mn = self.string(name);
                words.extend_from_slice(&[mn, *type_id, *bits]);
            }
            self.push(&words)
        }
        fn build(self) -> Vec<u8> {
            let mut out = Vec::new();
            out.extend_from_slice(&BTF_MAGIC.to_le_bytes());
            out.extend_from_slice(&[1, 0]);
            out.extend_from_slice(&24u32.to_le_bytes());
            out.extend_from_slice(&0u32.to_le_bytes());
            out.extend_from_slice(&(self.types.len() as u32).to_le_bytes());
            out.extend_from_slice(&(self.types.len() as u32).to_le_bytes());
            out.extend_from_slice(&(self.strings.len() as u32).to_le_bytes());
            out.extend_from_slice(&self.types);
            out.extend_from_slice(&self.strings);
            out
        }
    }

    fn synthetic() -> Vec<u8> {
        let mut b = Builder::new();
        let uint = b.int("unsigned int", 4);
        let ns_common = b.composite(
            KIND_STRUCT,
            "ns_common",
            16,
            &[("stashed", uint, 0), ("inum", uint, 64)],
        );
        let net = b.composite(
            KIND_STRUCT,
            "net",
            256,
            &[("passive", uint, 0), ("ns", ns_common, 128)],
        );
        let net_ptr = b.ptr(net);
        let possible_net = b.composite(KIND_STRUCT, "", 8, &[("net", net_ptr, 0)]);
        // skc_net hidden in an anonymous union, as members sometimes are.
        let anon = b.composite(
            KIND_UNION,
            "",
            8,
            &[("skc_net", possible_net, 0), ("other", uint, 0)],
        );
        let sock_common = b.composite(
            KIND_STRUCT,
            "sock_common",
            136,
            &[("skc_daddr", uint, 0), ("", anon, 384)],
        );
        b.composite(
            KIND_STRUCT,
            "sock",
            1024,
            &[("__sk_common", sock_common, 0), ("sk_rx", uint, 1088)],
        );
        let name = b.string("btf_trace_inet_sock_set_state");
        b.push(&[name, KIND_TYPEDEF << 24, uint]);
        b.build()
    }

    #[test]
    fn resolves_member_paths_through_anonymous_members() {
        let btf = Btf::parse(&synthetic()).unwrap();
        assert_eq!(
            btf.offset_of("sock", &["__sk_common", "skc_net", "net"]),
            Some(48)
        );
        assert_eq!(btf.offset_of("net", &["ns", "inum"]), Some(24));
        assert_eq!(btf.offset_of("sock", &["sk_rx"]), Some(136));
        assert_eq!(btf.offset_of("sock", &["nope"]), None);
        assert_eq!(btf.offset_of("nostruct", &["x"]), None);
        assert_eq!(
            btf.sock_layout(),
            Err("struct sock has no __sk_common.skc_family".to_owned())
        );
    }

    #[test]
    fn offsets_that_add_up_past_u32_are_no_offset() {
        // Found by fuzzing: the sums of bit offsets overflowed.
        let mut b = Builder::new();
        let uint = b.int("unsigned int", 4);
        let inner = b.composite(KIND_STRUCT, "inner", 8, &[("b", uint, 64)]);
        let anon = b.composite(KIND_STRUCT, "", 8, &[("c", uint, 64)]);
        b.composite(
            KIND_STRUCT,
            "outer",
            8,
            &[("a", inner, u32::MAX - 31), ("", anon, u32::MAX - 31)],
        );
        let btf = Btf::parse(&b.build()).unwrap();
        assert_eq!(btf.offset_of("outer", &["a"]), Some((u32::MAX - 31) / 8));
        assert_eq!(btf.offset_of("outer", &["a", "b"]), None);
        assert_eq!(btf.offset_of("outer", &["c"]), None);
    }

    #[test]
    fn lookups_through_shared_or_cyclic_anonymous_members_end() {
        // Found by fuzzing: every path through anonymous members was searched, 16^9 of them
        // here (a struct whose anonymous members are itself), and the lookup never ended.
        let mut b = Builder::new();
        let uint = b.int("unsigned int", 4);
        let own_id = b.next_id;
        let anonymous: Vec<(&str, u32, u32)> = (0..16).map(|i| ("", own_id, i * 32)).collect();
        b.composite(KIND_STRUCT, "loop", 64, &anonymous);
        // Two anonymous members of one type, each with two of the next: the first path wins.
        let leaf = b.composite(KIND_STRUCT, "", 4, &[("x", uint, 8)]);
        let mid = b.composite(KIND_STRUCT, "", 8, &[("", leaf, 0), ("", leaf, 32)]);
        b.composite(KIND_STRUCT, "top", 16, &[("", mid, 64), ("", mid, 0)]);
        let btf = Btf::parse(&b.build()).unwrap();
        assert_eq!(btf.offset_of("loop", &["missing"]), None);
        assert_eq!(btf.offset_of("top", &["x"]), Some(9));
        assert_eq!(btf.offset_of("top", &["y"]), None);
    }

    #[test]
    fn reads_enum_values_and_tracepoint_arguments() {
        let mut b = Builder::new();
        let uint = b.int("unsigned int", 4);
        // enum sk_rst_reason { SK_RST_REASON_NOT_SPECIFIED = 0, SK_RST_REASON_TCP_STATE = 14 }
        let name = b.string("sk_rst_reason");
        let (a, z) = (
            b.string("SK_RST_REASON_NOT_SPECIFIED"),
            b.string("SK_RST_REASON_TCP_STATE"),
        );
        b.push(&[name, (KIND_ENUM << 24) | 2, 4, a, 0, z, 14]);
        // An enum64 with a value past 32 bits, and a negative 32-bit one.
        let name = b.string("wide");
        let big = b.string("BIG");
        b.push(&[name, (KIND_ENUM64 << 24) | 1, 8, big, 5, 1]);
        let name = b.string("signed");
        let neg = b.string("NEG");
        b.push(&[name, (KIND_ENUM << 24) | 1, 4, neg, u32::MAX]);
        // typedef void (*btf_trace_tcp_send_reset)(void *, sk, skb, reason): three arguments.
        let proto = b.push(&[
            0,
            (KIND_FUNC_PROTO << 24) | 4,
            0,
            0,
            0,
            0,
            uint,
            0,
            uint,
            0,
            uint,
        ]);
        let ptr = b.ptr(proto);
        let name = b.string("btf_trace_tcp_send_reset");
        b.push(&[name, KIND_TYPEDEF << 24, ptr]);
        let proto = b.push(&[0, (KIND_FUNC_PROTO << 24) | 2, 0, 0, 0, 0, uint]);
        let ptr = b.ptr(proto);
        let name = b.string("btf_trace_tcp_receive_reset");
        b.push(&[name, KIND_TYPEDEF << 24, ptr]);
        let btf = Btf::parse(&b.build()).unwrap();
        assert_eq!(
            btf.enum_value("sk_rst_reason", "SK_RST_REASON_TCP_STATE"),
            Some(14)
        );
        assert_eq!(btf.enum_value("sk_rst_reason", "SK_RST_REASON_NOPE"), None);
        assert_eq!(btf.enum_value("wide", "BIG"), Some((1 << 32) | 5));
        assert_eq!(btf.enum_value("signed", "NEG"), Some(-1));
        let reasons = btf.reset_reasons();
        assert_eq!(reasons.name(0), Some("not_specified"));
        assert_eq!(reasons.name(14), Some("tcp_state"));
        assert_eq!(btf.tracepoint_arguments("tcp_send_reset"), Some(3));
        assert_eq!(btf.tracepoint_arguments("tcp_receive_reset"), Some(1));
        assert_eq!(btf.tracepoint_arguments("inet_sock_set_state"), None);
    }

    #[test]
    fn finds_tracepoints_by_their_typedef() {
        let btf = Btf::parse(&synthetic()).unwrap();
        assert!(btf.has_tracepoint("inet_sock_set_state"));
        assert!(!btf.has_tracepoint("tcp_send_reset"));
    }

    #[test]
    fn rejects_what_is_not_btf() {
        assert!(Btf::parse(b"").is_none());
        assert!(Btf::parse(&[0u8; 32]).is_none());
        let mut truncated = synthetic();
        truncated.truncate(40);
        assert!(Btf::parse(&truncated).is_none());
    }

    #[test]
    fn the_running_kernel_has_every_field_and_tracepoint() {
        // Skipped (with a reason) on kernels without BTF.
        match read_kernel_btf() {
            Ok(btf) => {
                let layout = btf
                    .sock_layout()
                    .expect("struct sock fields in vmlinux BTF");
                // The head of `struct sock_common` has not moved since Linux 4.x.
                assert_eq!(
                    (layout.dport, layout.num, layout.family, layout.state),
                    (12, 14, 16, 18),
                    "{layout:?}"
                );
                assert!(layout.has_netns == 1 && layout.net > 0 && layout.net_inum > 0);
                assert!(layout.cookie > 0, "{layout:?}");
                // What the close details read, and the reset reason from Linux 6.10.
                assert!(layout.sk_err > 0 && layout.sk_err_soft > 0 && layout.sk_flags > 0);
                assert_eq!((layout.sock_dead_bit, layout.sock_keepopen_bit), (0, 3));
                assert!(layout.icsk_retransmits > 0 && layout.icsk_user_timeout > 0);
                assert!(layout.icsk_probes_out > layout.icsk_retransmits);
                let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
                let mut numbers = release
                    .split(|c: char| !c.is_ascii_digit())
                    .filter_map(|n| n.parse::<u32>().ok());
                let version = (numbers.next().unwrap(), numbers.next().unwrap());
                assert_eq!(
                    layout.reset_reason_arg == 1,
                    version >= (6, 10),
                    "{release}"
                );
                if version >= (6, 10) {
                    let reasons = btf.reset_reasons();
                    assert!(
                        reasons.value("tcp_keepalive_timeout").is_some(),
                        "{reasons:?}"
                    );
                }
                for tracepoint in std::iter::once(names::PROGRAM).chain(names::SIGNAL_PROGRAMS) {
                    assert!(btf.has_tracepoint(tracepoint), "{tracepoint}");
                }
            }
            Err(err) => eprintln!("skipped: no kernel BTF: {err}"),
        }
    }
}
