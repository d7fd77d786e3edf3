//! How scalars and tagged nodes become JSON values, rule for rule as the `yaml` npm package (2.x)
//! resolves them for Backstage's `parseEntityYaml` and then turns them into JSON (`toJSON()`).
//!
//! * Untagged plain scalars resolve by the document's schema: the YAML 1.2 core schema, or the
//!   package's `yaml-1.1` schema after a `%YAML 1.1` directive (`yes` is `true`, `0755` is octal,
//!   `1:30` is 90, `2001-12-14` is a timestamp).
//! * An explicit core tag (`!!int`, `!!str` ...) is used only when the text passes that tag's own
//!   test; otherwise the node stays a string (upstream only warns).
//! * Values that are not JSON become what their `toJSON()` gives: `!!binary` a Node.js `Buffer`
//!   (`{"type":"Buffer","data":[...]}`), `!!timestamp` an ISO date string, `!!set` and `!!omap`
//!   (a JavaScript `Set`/`Map`) an empty object; NaN and infinities `null`.
//! * Local and unknown tags (`!Ref`, `!foo`, `tag:example.com,2000:x`) are not resolved: the node
//!   keeps its plain value.

use saphyr_parser::ScalarStyle;
use serde_json::{Map, Number, Value};

/// The tag prefix of the YAML core tags (`!!str` is `tag:yaml.org,2002:str`).
pub(super) const CORE: &str = "tag:yaml.org,2002:";

/// The schema that resolves the untagged plain scalars of a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) enum Schema {
    /// YAML 1.2 core schema, upstream's default.
    #[default]
    Core,
    /// Upstream's `yaml-1.1` schema, chosen by a `%YAML 1.1` directive.
    Yaml11,
}

/// Resolves a scalar. `tag` is the full tag name (`tag:yaml.org,2002:int`, `!foo`, or `!` for
/// the non-specific tag). An error is a tag whose resolution fails upstream (a `!!timestamp`
/// that is not a date).
pub(super) fn resolve_scalar(
    text: &str,
    style: ScalarStyle,
    tag: Option<&str>,
    schema: Schema,
) -> Result<Value, String> {
    match tag {
        None if style == ScalarStyle::Plain => Ok(implicit(text, schema)),
        // Quoted and block scalars, and the non-specific tag `!`, are strings.
        None | Some("!") => Ok(Value::String(text.to_owned())),
        Some(tag) => explicit(text, tag, schema),
    }
}

/// An untagged plain scalar, by the schema's tags in upstream's order.
fn implicit(t: &str, schema: Schema) -> Value {
    // Fast path: most plain scalars are words, which no type of either schema can start with.
    match t.as_bytes().first() {
        None
        | Some(
            b'0'..=b'9'
            | b'.'
            | b'+'
            | b'-'
            | b'~'
            | b'n'
            | b'N'
            | b't'
            | b'T'
            | b'f'
            | b'F'
            | b'y'
            | b'Y'
            | b'o'
            | b'O'
            | b'e'
            | b'E',
        ) => {}
        Some(_) => return Value::String(t.to_owned()),
    }
    if is_null(t) {
        return Value::Null;
    }
    let typed = match schema {
        Schema::Core => core_bool(t)
            .map(Value::Bool)
            .or_else(|| core_int(t))
            .or_else(|| core_float(t)),
        Schema::Yaml11 => yaml11_bool(t)
            .map(Value::Bool)
            .or_else(|| yaml11_int(t))
            .or_else(|| yaml11_float(t))
            .or_else(|| sexagesimal(t))
            .or_else(|| timestamp(t).map(Value::String)),
    };
    typed.unwrap_or_else(|| Value::String(t.to_owned()))
}

/// A scalar with an explicit tag (upstream's `findScalarTagByName`).
fn explicit(text: &str, tag: &str, schema: Schema) -> Result<Value, String> {
    let string = || Value::String(text.to_owned());
    let Some(name) = tag.strip_prefix(CORE) else {
        // Local (`!Ref`) and unknown tags are "unresolved": a warning upstream, the text stays.
        return Ok(string());
    };
    let yaml11 = schema == Schema::Yaml11;
    Ok(match name {
        "null" if is_null(text) => Value::Null,
        "bool" => if yaml11 { yaml11_bool(text) } else { core_bool(text) }.map_or_else(string, Value::Bool),
        "int" => if yaml11 {
            yaml11_int(text).or_else(|| sexagesimal_int(text))
        } else {
            core_int(text)
        }
        .unwrap_or_else(string),
        "float" => if yaml11 {
            yaml11_float(text).or_else(|| sexagesimal_float(text))
        } else {
            core_float(text)
        }
        .unwrap_or_else(string),
        "binary" => binary(text),
        // Upstream's resolver throws for a non-date, which the document reports as an error.
        "timestamp" => Value::String(
            timestamp(text).ok_or_else(|| "!!timestamp expects a date, starting with yyyy-mm-dd".to_owned())?,
        ),
        // `!!str`, a `!!null` that is not null, and collection tags on scalars: the text stays.
        _ => string(),
    })
}

/// `^(?:~|[Nn]ull|NULL)?$`, in both schemas.
fn is_null(t: &str) -> bool {
    matches!(t, "" | "~" | "null" | "Null" | "NULL")
}

fn core_bool(t: &str) -> Option<bool> {
    match t {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

fn yaml11_bool(t: &str) -> Option<bool> {
    match t {
        "Y" | "y" | "Yes" | "yes" | "YES" | "True" | "true" | "TRUE" | "On" | "on" | "ON" => Some(true),
        "N" | "n" | "No" | "no" | "NO" | "False" | "false" | "FALSE" | "Off" | "off" | "OFF" => Some(false),
        _ => None,
    }
}

fn all(digits: &str, ok: impl Fn(u8) -> bool) -> bool {
    !digits.is_empty() && digits.bytes().all(ok)
}

/// Core `intOct` (`0o17`), `int` (`-12`), `intHex` (`0x1f`).
fn core_int(t: &str) -> Option<Value> {
    if let Some(digits) = t.strip_prefix("0o") {
        return all(digits, |b| matches!(b, b'0'..=b'7')).then(|| parse_int(digits, 8, false));
    }
    if let Some(digits) = t.strip_prefix("0x") {
        return all(digits, |b| b.is_ascii_hexdigit()).then(|| parse_int(digits, 16, false));
    }
    let (negative, digits) = split_sign(t);
    all(digits, |b| b.is_ascii_digit()).then(|| parse_int(digits, 10, negative))
}

/// 1.1 `intBin` (`0b101`), `intOct` (`0755`), `int` (`1_000`), `intHex` (`0x_1F`), each with an
/// optional sign; underscores are dropped.
fn yaml11_int(t: &str) -> Option<Value> {
    let (negative, unsigned) = split_sign(t);
    let bin = |b: u8| matches!(b, b'0' | b'1' | b'_');
    let oct = |b: u8| matches!(b, b'0'..=b'7' | b'_');
    let dec = |b: u8| b.is_ascii_digit() || b == b'_';
    let hex = |b: u8| b.is_ascii_hexdigit() || b == b'_';
    let clean = |s: &str| s.replace('_', "");
    if let Some(digits) = unsigned.strip_prefix("0b").filter(|d| all(d, bin)) {
        return Some(parse_int(&clean(digits), 2, negative));
    }
    if let Some(digits) = unsigned.strip_prefix('0').filter(|d| all(d, oct)) {
        return Some(parse_int(&clean(digits), 8, negative));
    }
    if unsigned.as_bytes().first().is_some_and(u8::is_ascii_digit) && all(unsigned, dec) {
        return Some(parse_int(&clean(unsigned), 10, negative));
    }
    if let Some(digits) = unsigned.strip_prefix("0x").filter(|d| all(d, hex)) {
        return Some(parse_int(&clean(digits), 16, negative));
    }
    None
}

fn split_sign(t: &str) -> (bool, &str) {
    match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    }
}

/// JavaScript's `parseInt(digits, radix)` of validated digits: exact below 2^53, a rounded
/// number above, `NaN` (JSON `null`) for no digits.
fn parse_int(digits: &str, radix: u32, negative: bool) -> Value {
    if digits.is_empty() {
        return Value::Null;
    }
    let magnitude = match u64::from_str_radix(digits, radix) {
        #[allow(clippy::cast_precision_loss)]
        Ok(n) => n as f64,
        Err(_) if radix == 10 => digits.parse::<f64>().unwrap_or(f64::NAN),
        Err(_) => digits
            .chars()
            .filter_map(|c| c.to_digit(radix))
            .fold(0.0, |acc, d| acc * f64::from(radix) + f64::from(d)),
    };
    js_number(if negative { -magnitude } else { magnitude })
}

/// Core `floatNaN`, `floatExp` (`^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)[eE][-+]?[0-9]+$`) and `float`
/// (`^[-+]?(\.[0-9]+|[0-9]+\.[0-9]*)$`). A float needs a dot or an exponent: `!!float 3` is not
/// one upstream.
fn core_float(t: &str) -> Option<Value> {
    if let Some(v) = float_nan(t) {
        return Some(v);
    }
    let (_, unsigned) = split_sign(t);
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(i) => (&unsigned[..i], Some(&unsigned[i + 1..])),
        None => (unsigned, None),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = match mantissa.split_once('.') {
        Some(("", frac)) => !frac.is_empty() && digits(frac),
        Some((int, frac)) => digits(int) && digits(frac),
        None => exponent.is_some() && all(mantissa, |b| b.is_ascii_digit()),
    };
    let exponent_ok = exponent.is_none_or(|e| all(split_sign(e).1, |b| b.is_ascii_digit()));
    (mantissa_ok && exponent_ok).then(|| js_parse_float(t))
}

/// 1.1 `floatNaN`, `floatExp` (`^[-+]?([0-9][0-9_]*)?(\.[0-9_]*)?[eE][-+]?[0-9]+$`) and `float`
/// (`^[-+]?([0-9][0-9_]*)?\.[0-9_]*$`); `.` alone and `e3` match too and are `NaN` upstream.
fn yaml11_float(t: &str) -> Option<Value> {
    if let Some(v) = float_nan(t) {
        return Some(v);
    }
    let (_, unsigned) = split_sign(t);
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(i) => (&unsigned[..i], Some(&unsigned[i + 1..])),
        None => (unsigned, None),
    };
    let (int, frac) = match mantissa.split_once('.') {
        Some((int, frac)) => (int, Some(frac)),
        None => (mantissa, None),
    };
    let int_ok =
        int.is_empty() || (int.as_bytes()[0].is_ascii_digit() && int.bytes().all(|b| b.is_ascii_digit() || b == b'_'));
    let frac_ok = frac.is_none_or(|f| f.bytes().all(|b| b.is_ascii_digit() || b == b'_'));
    let shape_ok = match exponent {
        Some(e) => all(split_sign(e).1, |b| b.is_ascii_digit()),
        None => frac.is_some(),
    };
    (int_ok && frac_ok && shape_ok).then(|| js_parse_float(&t.replace('_', "")))
}

/// `^(?:[-+]?\.(?:inf|Inf|INF)|\.nan|\.NaN|\.NAN)$`: infinities and NaN, `null` in JSON.
fn float_nan(t: &str) -> Option<Value> {
    let unsigned = split_sign(t).1;
    (matches!(unsigned, ".inf" | ".Inf" | ".INF") || matches!(t, ".nan" | ".NaN" | ".NAN")).then_some(Value::Null)
}

/// JavaScript's `parseFloat` of text made of a sign, digits, one dot and an exponent: the longest
/// numeric prefix counts; no digit before the exponent is `NaN`.
fn js_parse_float(t: &str) -> Value {
    let (negative, unsigned) = split_sign(t);
    let bytes = unsigned.as_bytes();
    let mut i = 0;
    let int_start = i;
    while bytes.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    let int = &unsigned[int_start..i];
    let mut frac = "";
    if bytes.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while bytes.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        frac = &unsigned[start..i];
    }
    if int.is_empty() && frac.is_empty() {
        return Value::Null;
    }
    let mut exponent = "0";
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        let start = i + 1;
        let mut j = start;
        if matches!(bytes.get(j), Some(b'-' | b'+')) {
            j += 1;
        }
        let digits_start = j;
        while bytes.get(j).is_some_and(u8::is_ascii_digit) {
            j += 1;
        }
        if j > digits_start {
            exponent = &unsigned[start..j];
        }
    }
    let int = if int.is_empty() { "0" } else { int };
    let frac = if frac.is_empty() { "0" } else { frac };
    let f: f64 = format!("{int}.{frac}e{exponent}").parse().unwrap_or(f64::NAN);
    js_number(if negative { -f } else { f })
}

/// 1.1 `intTime` (`^[-+]?[0-9][0-9_]*(:[0-5]?[0-9])+$`): base-60 integers such as `1:30` (90).
fn sexagesimal_int(t: &str) -> Option<Value> {
    let (_, unsigned) = split_sign(t);
    let mut parts = unsigned.split(':');
    let first = parts.next()?;
    let first_ok = first.as_bytes().first().is_some_and(u8::is_ascii_digit)
        && first.bytes().all(|b| b.is_ascii_digit() || b == b'_');
    let mut rest = parts.peekable();
    rest.peek()?;
    let rest_ok = rest.all(base60_digit);
    (first_ok && rest_ok).then(|| parse_sexagesimal(t))
}

/// 1.1 `floatTime` (`^[-+]?[0-9][0-9_]*(:[0-5]?[0-9])+\.[0-9_]*$`): `1:30.5` (90.5).
fn sexagesimal_float(t: &str) -> Option<Value> {
    let (whole, frac) = t.rsplit_once('.')?;
    let frac_ok = frac.bytes().all(|b| b.is_ascii_digit() || b == b'_');
    (frac_ok && sexagesimal_int(whole).is_some()).then(|| parse_sexagesimal(t))
}

fn sexagesimal(t: &str) -> Option<Value> {
    sexagesimal_int(t).or_else(|| sexagesimal_float(t))
}

/// `[0-5]?[0-9]`
fn base60_digit(part: &str) -> bool {
    match part.as_bytes() {
        [d] => d.is_ascii_digit(),
        [a, b] => matches!(a, b'0'..=b'5') && b.is_ascii_digit(),
        _ => false,
    }
}

/// Upstream's `parseSexagesimal`: drop `_`, then `res * 60 + Number(part)` over the `:` parts.
fn parse_sexagesimal(t: &str) -> Value {
    js_number(sexagesimal_value(t))
}

fn sexagesimal_value(t: &str) -> f64 {
    let (negative, unsigned) = split_sign(t);
    let value = unsigned
        .replace('_', "")
        .split(':')
        .fold(0.0, |acc, part| acc * 60.0 + js_number_of(part));
    if negative { -value } else { value }
}

/// JavaScript's `Number(text)` for digit strings with at most one dot (`""` is 0).
fn js_number_of(part: &str) -> f64 {
    if part.is_empty() {
        return 0.0;
    }
    let normalised = if part.ends_with('.') {
        format!("{part}0")
    } else {
        part.to_owned()
    };
    normalised.parse().unwrap_or(f64::NAN)
}

/// A JavaScript number as `JSON.stringify` writes it: NaN and infinities are `null`, integral
/// values print without a fraction (`1.0` is `1`).
pub(super) fn js_number(f: f64) -> Value {
    if !f.is_finite() {
        return Value::Null;
    }
    if f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 {
        #[allow(clippy::cast_possible_truncation)]
        return Value::Number((f as i64).into());
    }
    Number::from_f64(f).map_or(Value::Null, Value::Number)
}

/// `!!binary`: Node's `Buffer.from(text, 'base64')` (both alphabets, other characters skipped,
/// decoding stops at the first `=`), as `Buffer.toJSON()` gives it.
fn binary(text: &str) -> Value {
    let mut data = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for b in text.bytes() {
        let sextet = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => break,
            _ => continue,
        };
        acc = (acc << 6) | u32::from(sextet);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            data.push(((acc >> bits) & 0xff) as u8);
        }
    }
    let mut buffer = Map::new();
    buffer.insert("type".to_owned(), Value::String("Buffer".to_owned()));
    buffer.insert(
        "data".to_owned(),
        Value::Array(data.into_iter().map(|b| Value::Number(b.into())).collect()),
    );
    Value::Object(buffer)
}

/// `!!timestamp` (implicit in the 1.1 schema): upstream's pattern
/// `YYYY-M-D[(t|T|blanks)H:M:S[.frac][blanks][Z|±H[H][:MM]]]`, computed with `Date.UTC` and
/// written as `Date.prototype.toJSON` writes it (`2001-12-14T00:00:00.000Z`).
fn timestamp(t: &str) -> Option<String> {
    let mut s = Cursor {
        bytes: t.as_bytes(),
        at: 0,
    };
    let year = s.digits(4, 4)?;
    s.eat(b'-')?;
    let month = s.digits(1, 2)?;
    s.eat(b'-')?;
    let day = s.digits(1, 2)?;
    let (mut hour, mut minute, mut second, mut millis) = (0, 0, 0, 0);
    let mut zone_minutes = 0.0;
    if !s.done() {
        if s.eat(b't').is_none() && s.eat(b'T').is_none() && s.blanks() == 0 {
            return None;
        }
        hour = s.digits(1, 2)?;
        s.eat(b':')?;
        minute = s.digits(1, 2)?;
        s.eat(b':')?;
        second = s.digits(1, 2)?;
        if s.eat(b'.').is_some() {
            let start = s.at;
            s.digits(1, usize::MAX)?;
            // `Number((".5" + "00").substr(1, 3))`: the first three fraction digits, padded.
            let frac = format!("{}00", &t[start..s.at]);
            millis = frac[..3].parse::<i64>().ok()?;
        }
        s.blanks();
        if s.eat(b'Z').is_none() && !s.done() {
            let start = s.at;
            if s.eat(b'-').is_none() {
                s.eat(b'+')?;
            }
            let hours_start = s.at;
            let hours = s.digits(1, 2)?;
            if s.at - hours_start == 2 && !matches!(t.as_bytes()[hours_start], b'0'..=b'2') {
                return None;
            }
            let _ = hours;
            if s.eat(b':').is_some() {
                s.digits(2, 2)?;
            }
            // Upstream reads the zone as base 60 and takes small values as hours.
            let mut d = sexagesimal_value(&t[start..s.at]);
            if d.abs() < 30.0 {
                d *= 60.0;
            }
            zone_minutes = d;
        }
        if !s.done() {
            return None;
        }
    }
    // `Date.UTC` reads years 0-99 as 1900-1999 and carries overflowing fields over.
    let year = if year <= 99 { year + 1900 } else { year };
    let months = year * 12 + month - 1;
    let days = days_from_civil(months.div_euclid(12), months.rem_euclid(12) + 1, 1) + day - 1;
    #[allow(clippy::cast_possible_truncation)]
    let zone = (zone_minutes * 60_000.0) as i64;
    let ms = days * 86_400_000 + hour * 3_600_000 + minute * 60_000 + second * 1000 + millis - zone;
    Some(iso_string(ms))
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn done(&self) -> bool {
        self.at == self.bytes.len()
    }

    fn eat(&mut self, b: u8) -> Option<()> {
        (self.bytes.get(self.at) == Some(&b)).then(|| self.at += 1)
    }

    fn blanks(&mut self) -> usize {
        let start = self.at;
        while matches!(self.bytes.get(self.at), Some(b' ' | b'\t')) {
            self.at += 1;
        }
        self.at - start
    }

    fn digits(&mut self, min: usize, max: usize) -> Option<i64> {
        let start = self.at;
        while self.at - start < max && self.bytes.get(self.at).is_some_and(u8::is_ascii_digit) {
            self.at += 1;
        }
        if self.at - start < min {
            return None;
        }
        std::str::from_utf8(&self.bytes[start..self.at])
            .ok()?
            .parse::<i64>()
            .ok()
            .or(Some(0))
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `Date.prototype.toISOString` of milliseconds since the epoch.
fn iso_string(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let in_day = ms.rem_euclid(86_400_000);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let year = if (0..=9999).contains(&year) {
        format!("{year:04}")
    } else {
        format!("{}{:06}", if year < 0 { '-' } else { '+' }, year.abs())
    };
    format!(
        "{year}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000
    )
}

/// A tagged mapping: `!!set` becomes a JavaScript `Set`, which is `{}` in JSON, if every value is
/// null. Other tags (`!!map`, local, unknown, or made for other node kinds) leave it as it is.
pub(super) fn tagged_mapping(map: Map<String, Value>, tag: Option<&str>) -> Result<Value, String> {
    match tag.and_then(|t| t.strip_prefix(CORE)) {
        Some("set") if map.values().all(Value::is_null) => Ok(Value::Object(Map::new())),
        Some("set") => Err("set items must all have null values".to_owned()),
        _ => Ok(Value::Object(map)),
    }
}

/// A tagged sequence: `!!pairs` becomes a list of one-key mappings, `!!omap` a JavaScript `Map`
/// (`{}` in JSON) whose keys must be unique. Other tags leave it as it is.
pub(super) fn tagged_sequence(items: Vec<Value>, tag: Option<&str>) -> Result<Value, String> {
    let name = tag.and_then(|t| t.strip_prefix(CORE));
    if !matches!(name, Some("pairs" | "omap")) {
        return Ok(Value::Array(items));
    }
    let mut pairs = Vec::with_capacity(items.len());
    for item in items {
        pairs.push(match item {
            Value::Object(map) if map.len() > 1 => {
                return Err("each pair must have its own sequence indicator".to_owned());
            }
            Value::Object(map) => map.into_iter().next().unwrap_or((String::new(), Value::Null)),
            other => (super::key_string(other), Value::Null),
        });
    }
    if name == Some("omap") {
        let mut seen = std::collections::HashSet::new();
        for (key, _) in &pairs {
            if !seen.insert(key.as_str()) {
                return Err(format!("ordered maps must not include duplicate keys: {key}"));
            }
        }
        return Ok(Value::Object(Map::new()));
    }
    Ok(Value::Array(
        pairs
            .into_iter()
            .map(|(k, v)| Value::Object(std::iter::once((k, v)).collect()))
            .collect(),
    ))
}
