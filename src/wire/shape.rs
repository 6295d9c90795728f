//! How big a JSON text is once parsed, found without parsing it: its
//! nesting depth and how many values it holds. Checked before any
//! `serde_json::Value` is built, because a parsed value costs far more
//! memory than its text (about a hundred bytes per number), and because
//! serde_json refuses to read anything nested more than 128 levels.
//!
//! The scan is a single pass over the bytes that only tracks whether it
//! is inside a string. It does not validate: text that is not JSON gets
//! whatever figures the scan finds and is refused by the parser after.

/// Depth and value count of a JSON text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Deepest nesting of arrays and objects (`1` for `{}` or `[1]`, `0`
    /// for a bare scalar).
    pub depth: usize,
    /// An upper bound on the values and object keys it holds: one per
    /// separator and per container, plus one.
    pub values: usize,
}

/// The limits a text must stay within.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub depth: usize,
    pub values: usize,
}

/// The limits for anything the hub stores or its clients read. A page of
/// messages wraps a stored value about four levels deeper than the request
/// that carried it, and serde_json reads at most 128, so 64 leaves room on
/// both sides. The value cap keeps a parsed request body to tens of
/// megabytes; no body the reference's own clients send comes near it.
pub const LIMITS: Limits = Limits {
    depth: 64,
    values: 262_144,
};

/// The figures for `text`, stopping early once either passes `stop`.
pub fn measure(text: &[u8], stop: Limits) -> Shape {
    let (mut depth, mut deepest, mut values) = (0usize, 0usize, 1usize);
    let mut in_string = false;
    let mut bytes = text.iter();
    while let Some(&b) = bytes.next() {
        if in_string {
            match b {
                b'\\' => {
                    bytes.next();
                }
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
                values += 1;
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b',' | b':' => values += 1,
            _ => continue,
        }
        if deepest > stop.depth || values > stop.values {
            break;
        }
    }
    Shape {
        depth: deepest,
        values,
    }
}

/// Why `text` is over `limits`, if it is: a message naming the limit.
pub fn over(text: &[u8], limits: Limits) -> Option<String> {
    let s = measure(text, limits);
    if s.depth > limits.depth {
        Some(format!("nested deeper than {} levels", limits.depth))
    } else if s.values > limits.values {
        Some(format!("holds more than {} JSON values", limits.values))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BIG: Limits = Limits {
        depth: 1000,
        values: 1_000_000,
    };

    #[test]
    fn depth_counts_containers_and_ignores_brackets_in_strings() {
        assert_eq!(measure(b"5", BIG).depth, 0);
        assert_eq!(measure(b"{}", BIG).depth, 1);
        assert_eq!(measure(br#"{"a":[[1],{"b":[]}]}"#, BIG).depth, 4);
        assert_eq!(measure(br#"{"a":"[[[[{{{{"}"#, BIG).depth, 1);
        // An escaped quote does not end the string; an escaped backslash does not escape it.
        assert_eq!(measure(br#"["\"[[[", "\\", [[]]]"#, BIG).depth, 3);
    }

    #[test]
    fn values_bound_what_a_parse_would_allocate() {
        for (text, at_least) in [
            (&br#"{}"#[..], 1),
            (br#"[0,0,0,0]"#, 5),
            (br#"{"a":1,"b":[2,3]}"#, 6),
            (br#"["a,b:c", "d"]"#, 3),
        ] {
            let got = measure(text, BIG).values;
            let parsed: serde_json::Value = serde_json::from_slice(text).unwrap();
            assert!(got >= at_least, "{text:?}: {got}");
            assert!(
                got >= count(&parsed),
                "{text:?}: {got} < {}",
                count(&parsed)
            );
        }
    }

    fn count(v: &serde_json::Value) -> usize {
        match v {
            serde_json::Value::Array(a) => 1 + a.iter().map(count).sum::<usize>(),
            serde_json::Value::Object(m) => 1 + m.values().map(|v| 1 + count(v)).sum::<usize>(),
            _ => 1,
        }
    }

    #[test]
    fn over_names_the_limit_and_stops_early() {
        let deep = "[".repeat(65) + &"]".repeat(65);
        assert_eq!(
            over(deep.as_bytes(), LIMITS).unwrap(),
            "nested deeper than 64 levels"
        );
        let ok = "[".repeat(64) + &"]".repeat(64);
        assert_eq!(over(ok.as_bytes(), LIMITS), None);
        let wide = format!("[{}0]", "0,".repeat(LIMITS.values));
        assert_eq!(
            over(wide.as_bytes(), LIMITS).unwrap(),
            "holds more than 262144 JSON values"
        );
        let fits = format!("[{}0]", "0,".repeat(LIMITS.values - 3));
        assert_eq!(over(fits.as_bytes(), LIMITS), None);
        // Stopping early: a scan of a huge deep text ends at the limit.
        let s = measure(("[".repeat(10_000)).as_bytes(), LIMITS);
        assert_eq!(s.depth, 65);
    }
}
