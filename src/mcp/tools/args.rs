//! A tool call's arguments, read against the tool's table entry: errors
//! name the argument, and defaults come from the table, so the schema a
//! host sees and what a handler gets cannot disagree.

use serde_json::{Map, Value};

use super::Arg;

type Res<T> = std::result::Result<T, String>;

/// Tool arguments, with errors that name the argument; defaults come
/// from the tool's table entry.
pub struct Args<'a> {
    values: &'a Map<String, Value>,
    spec: &'static [(&'static str, Arg)],
}

impl<'a> Args<'a> {
    pub(super) fn new(
        values: &'a Map<String, Value>,
        spec: &'static [(&'static str, Arg)],
    ) -> Self {
        Args { values, spec }
    }

    fn get(&self, key: &str) -> Option<&Value> {
        self.values.get(key).filter(|v| !v.is_null())
    }

    fn spec(&self, key: &str) -> Option<Arg> {
        self.spec.iter().find(|(n, _)| *n == key).map(|(_, a)| *a)
    }

    fn no_default(key: &str) -> String {
        format!("tool table: argument {key} has no default")
    }

    fn missing(key: &str) -> String {
        format!("missing required argument: {key}")
    }

    pub fn string_or_default(&self, key: &str) -> Res<String> {
        match (self.opt_string(key)?, self.spec(key)) {
            (Some(v), _) => Ok(v),
            (None, Some(Arg::StrDefault(d))) => Ok(d.to_string()),
            (None, _) => Err(Self::no_default(key)),
        }
    }

    pub fn int_or_default(&self, key: &str) -> Res<i64> {
        match (self.opt_int(key)?, self.spec(key)) {
            (Some(v), _) => Ok(v),
            (None, Some(Arg::IntDefault(d))) => Ok(d),
            (None, _) => Err(Self::no_default(key)),
        }
    }

    pub fn string(&self, key: &str) -> Res<String> {
        self.opt_string(key)?.ok_or_else(|| Self::missing(key))
    }

    pub fn opt_string(&self, key: &str) -> Res<Option<String>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(n @ Value::Number(_)) => Ok(Some(n.to_string())),
            Some(_) => Err(format!("argument {key} must be a string")),
        }
    }

    pub fn int(&self, key: &str) -> Res<i64> {
        self.opt_int(key)?.ok_or_else(|| Self::missing(key))
    }

    pub fn opt_int(&self, key: &str) -> Res<Option<i64>> {
        let bad = || format!("argument {key} must be an integer");
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => match (n.as_i64(), n.as_f64()) {
                (Some(i), _) => Ok(Some(i)),
                (None, Some(f)) if f.fract() == 0.0 && f.abs() < 9e15 => Ok(Some(f as i64)),
                _ => Err(bad()),
            },
            Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| bad()),
            Some(_) => Err(bad()),
        }
    }

    /// A number of seconds, clamped to `0..=max`.
    pub fn number(&self, key: &str, max: f64) -> Res<f64> {
        let bad = || format!("argument {key} must be a number");
        let v = match (self.get(key), self.spec(key)) {
            (None, Some(Arg::NumDefault(d))) => d as f64,
            (None, _) => return Err(Self::no_default(key)),
            (Some(v), _) => match v {
                Value::Number(n) => n.as_f64().ok_or_else(bad)?,
                Value::String(s) => s.trim().parse::<f64>().map_err(|_| bad())?,
                _ => return Err(bad()),
            },
        };
        if !v.is_finite() {
            return Err(bad());
        }
        Ok(v.clamp(0.0, max))
    }

    /// A boolean (`true`/`false`, or the strings and numbers hosts send
    /// for them), or the table's default.
    pub fn flag(&self, key: &str) -> Res<bool> {
        let bad = || format!("argument {key} must be a boolean");
        match (self.get(key), self.spec(key)) {
            (None, Some(Arg::BoolDefault(d))) => Ok(d),
            (None, _) => Err(Self::no_default(key)),
            (Some(Value::Bool(b)), _) => Ok(*b),
            (Some(Value::Number(n)), _) => match n.as_f64() {
                Some(f) if f == 0.0 || f == 1.0 => Ok(f == 1.0),
                _ => Err(bad()),
            },
            (Some(Value::String(s)), _) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => Ok(true),
                "false" | "0" | "no" => Ok(false),
                _ => Err(bad()),
            },
            (Some(_), _) => Err(bad()),
        }
    }

    /// A non-empty list of strings; a lone string is a list of one.
    pub fn strings(&self, key: &str) -> Res<Vec<String>> {
        let bad = || format!("argument {key} must be a list of strings");
        let list = match self.get(key) {
            None => return Err(Self::missing(key)),
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_string).ok_or_else(bad))
                .collect::<Res<Vec<_>>>()?,
            Some(_) => return Err(bad()),
        };
        if list.is_empty() {
            return Err(format!("argument {key} must not be empty"));
        }
        Ok(list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SPEC: &[(&str, Arg)] = &[
        ("paths", Arg::StrList),
        ("shared", Arg::BoolDefault(false)),
        ("n", Arg::IntDefault(7)),
    ];

    fn args(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn lists_and_booleans_are_read_leniently_and_named_when_wrong() {
        let m = args(json!({"paths": "src/a.rs", "shared": "yes"}));
        let a = Args::new(&m, SPEC);
        assert_eq!(a.strings("paths").unwrap(), ["src/a.rs"]);
        assert!(a.flag("shared").unwrap());
        assert_eq!(a.int_or_default("n").unwrap(), 7);
        let m = args(json!({"paths": ["a", 1], "shared": 2}));
        let a = Args::new(&m, SPEC);
        assert_eq!(
            a.strings("paths").unwrap_err(),
            "argument paths must be a list of strings"
        );
        assert_eq!(
            a.flag("shared").unwrap_err(),
            "argument shared must be a boolean"
        );
        let m = args(json!({"paths": []}));
        let a = Args::new(&m, SPEC);
        assert_eq!(
            a.strings("paths").unwrap_err(),
            "argument paths must not be empty"
        );
        assert!(!a.flag("shared").unwrap());
        let m = Map::new();
        assert_eq!(
            Args::new(&m, SPEC).strings("paths").unwrap_err(),
            "missing required argument: paths"
        );
    }
}
