//! Python `json.dumps` formatting, for spool files and CLI output that
//! scripts written against the reference compare byte for byte.

use serde::Serialize;

/// Serialises like Python's `json.dumps`: `", "` and `": "` separators (or
/// a 2-space indent), and every non-ASCII character escaped as `\uXXXX`.
/// The CLI prints with it so scripts written against the reference keep
/// matching its output byte for byte.
pub fn to_python_json<T: Serialize>(value: &T, indent: bool) -> String {
    let mut out = Vec::new();
    let fmt = PyFormatter {
        indent,
        level: 0,
        has_value: false,
    };
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    if value.serialize(&mut ser).is_err() {
        return String::from("null");
    }
    String::from_utf8(out).unwrap_or_default()
}

struct PyFormatter {
    indent: bool,
    level: usize,
    has_value: bool,
}

impl PyFormatter {
    fn newline<W: ?Sized + std::io::Write>(&self, w: &mut W) -> std::io::Result<()> {
        w.write_all(b"\n")?;
        for _ in 0..self.level {
            w.write_all(b"  ")?;
        }
        Ok(())
    }

    /// `[` or `{`.
    fn open<W: ?Sized + std::io::Write>(&mut self, w: &mut W, b: &[u8]) -> std::io::Result<()> {
        self.level += 1;
        self.has_value = false;
        w.write_all(b)
    }

    /// `]` or `}`, on its own line when indenting a non-empty container.
    fn close<W: ?Sized + std::io::Write>(&mut self, w: &mut W, b: &[u8]) -> std::io::Result<()> {
        self.level -= 1;
        if self.indent && self.has_value {
            self.newline(w)?;
        }
        self.has_value = true;
        w.write_all(b)
    }

    /// The separator before an array element or object key.
    fn item<W: ?Sized + std::io::Write>(&mut self, w: &mut W, first: bool) -> std::io::Result<()> {
        if !first {
            w.write_all(if self.indent { b"," } else { b", " })?;
        }
        if self.indent {
            self.newline(w)?;
        }
        Ok(())
    }
}

impl serde_json::ser::Formatter for PyFormatter {
    fn begin_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.open(w, b"[")
    }

    fn end_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.close(w, b"]")
    }

    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.item(w, first)
    }

    fn end_array_value<W: ?Sized + std::io::Write>(&mut self, _w: &mut W) -> std::io::Result<()> {
        self.has_value = true;
        Ok(())
    }

    fn begin_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.open(w, b"{")
    }

    fn end_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.close(w, b"}")
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.item(w, first)
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(b": ")
    }

    fn end_object_value<W: ?Sized + std::io::Write>(&mut self, _w: &mut W) -> std::io::Result<()> {
        self.has_value = true;
        Ok(())
    }

    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        ascii_escaped(w, fragment)
    }

    /// Raw JSON (a [`serde_json::value::RawValue`]) is copied as it is,
    /// except that non-ASCII characters are escaped too: in valid JSON
    /// they only occur inside strings, where `\uXXXX` means the same.
    fn write_raw_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        ascii_escaped(w, fragment)
    }
}

/// Writes `text` with every non-ASCII character as `\uXXXX` (UTF-16
/// units, as Python does), copying ASCII runs whole.
fn ascii_escaped<W: ?Sized + std::io::Write>(w: &mut W, text: &str) -> std::io::Result<()> {
    let mut rest = text;
    while let Some(i) = rest.find(|c: char| !c.is_ascii()) {
        w.write_all(&rest.as_bytes()[..i])?;
        let c = rest[i..].chars().next().unwrap_or_default();
        let mut units = [0u16; 2];
        for u in c.encode_utf16(&mut units) {
            write!(w, "\\u{u:04x}")?;
        }
        rest = &rest[i + c.len_utf8()..];
    }
    w.write_all(rest.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::EnsureResult;
    use serde_json::json;

    #[test]
    fn python_style_json() {
        let v = json!({"a": 1, "b": [1, "é😀"], "c": {}, "d": []});
        assert_eq!(
            to_python_json(&v, false),
            r#"{"a": 1, "b": [1, "\u00e9\ud83d\ude00"], "c": {}, "d": []}"#
        );
        assert_eq!(
            to_python_json(&v, true),
            "{\n  \"a\": 1,\n  \"b\": [\n    1,\n    \"\\u00e9\\ud83d\\ude00\"\n  ],\n  \"c\": {},\n  \"d\": []\n}"
        );
        let r = EnsureResult {
            running: true,
            started: false,
            url: "http://x".into(),
            error: None,
            note: None,
        };
        assert_eq!(
            to_python_json(&r, true),
            "{\n  \"running\": true,\n  \"started\": false,\n  \"url\": \"http://x\"\n}"
        );
    }

    #[test]
    fn raw_json_is_copied_with_non_ascii_escaped() {
        #[derive(Serialize)]
        struct Holder<'a> {
            body: &'a serde_json::value::RawValue,
            k: &'a str,
        }
        let text = r#"{"a":[1,2.50],"b":"\u00e9é😀","c":"\n"}"#;
        let raw: &serde_json::value::RawValue = serde_json::from_str(text).unwrap();
        let out = to_python_json(&Holder { body: raw, k: "ü" }, true);
        let want = r#"{
  "body": {"a":[1,2.50],"b":"\u00e9\u00e9\ud83d\ude00","c":"\n"},
  "k": "\u00fc"
}"#;
        assert_eq!(out, want);
        let back: serde_json::Value = serde_json::from_str(&out).unwrap();
        let orig: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(back["body"], orig);
    }
}
