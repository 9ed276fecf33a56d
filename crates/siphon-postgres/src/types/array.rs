//! Arrays in both formats, with their bounds.

use super::*;

// ---------------------------------------------------------------------------
// arrays
// ---------------------------------------------------------------------------

/// PostgreSQL's MAXDIM.
pub(super) const MAX_DIMS: usize = 6;

pub(super) fn element_of(ty: &PgType) -> Result<&PgType, CodecError> {
    match ty.element.as_deref() {
        Some(e) if e.element.is_none() => Ok(e),
        _ => Err(CodecError::Binary {
            ty: ty.name.clone(),
            reason: "array type without a scalar element type",
        }),
    }
}

/// The binary array format: ndim, has-null flag, element OID, (size, lower
/// bound) per dimension, then the elements in row-major order, each with an i32
/// length (-1 for NULL).
pub(super) fn decode_array(ty: &PgType, raw: &[u8]) -> Result<Value, CodecError> {
    let elem = element_of(ty)?;
    let bad = |reason| CodecError::Binary {
        ty: ty.name.clone(),
        reason,
    };
    let mut r = Reader { b: raw };
    let ndim = r.i32().ok_or_else(|| bad("truncated header"))?;
    let flags = r.i32().ok_or_else(|| bad("truncated header"))?;
    // The element OID is not checked: an array of a domain names the domain,
    // while the codec reads its base type.
    r.take(4).ok_or_else(|| bad("truncated header"))?;
    if !(0..=MAX_DIMS as i32).contains(&ndim) {
        return Err(bad("more than 6 dimensions, or a negative count"));
    }
    if flags != 0 && flags != 1 {
        return Err(bad("invalid flags"));
    }
    let mut dims = [0usize; MAX_DIMS];
    let mut lower = [1i32; MAX_DIMS];
    let mut total: usize = if ndim == 0 { 0 } else { 1 };
    for (d, lb) in dims.iter_mut().zip(lower.iter_mut()).take(ndim as usize) {
        let size = r.i32().ok_or_else(|| bad("truncated dimensions"))?;
        *lb = r.i32().ok_or_else(|| bad("truncated dimensions"))?;
        *d = usize::try_from(size).map_err(|_| bad("negative dimension"))?;
        total = total
            .checked_mul(*d)
            .ok_or_else(|| bad("too many elements"))?;
    }
    if total == 0 {
        return if r.b.is_empty() {
            Ok(Value::Array(Vec::new()))
        } else {
            Err(bad("bytes after an empty array"))
        };
    }
    // Every element takes at least its 4-byte length: this bounds what the
    // header may make us allocate by the bytes actually here.
    if total > r.b.len() / 4 {
        return Err(bad("more elements than bytes"));
    }
    let v = build_array(elem, &dims[..ndim as usize], &mut r).map_err(|e| match e {
        Some(e) => e,
        None => bad("truncated element"),
    })?;
    if !r.b.is_empty() {
        return Err(bad("bytes after the last element"));
    }
    let lower = &lower[..ndim as usize];
    if lower.iter().all(|&l| l == 1) {
        return Ok(v);
    }
    // Lower bounds other than 1 travel in the array's text form, which keeps them.
    let mut text = String::new();
    push_bounds(&mut text, &dims[..ndim as usize], lower);
    if let Value::Array(items) = &v {
        push_literal(elem, items, &mut text)?;
    }
    Ok(Value::Engine {
        type_name: ty.name.clone(),
        text,
    })
}

/// The bounds decoration of an array's text form: `[0:1][1:2]=`.
fn push_bounds(out: &mut String, dims: &[usize], lower: &[i32]) {
    for (&d, &l) in dims.iter().zip(lower) {
        let upper = i64::from(l) + d as i64 - 1;
        let _ = write!(out, "[{l}:{upper}]");
    }
    out.push('=');
}

/// Appends the array literal of `items` (`{a,"b c",NULL}`, nested for more
/// dimensions) as PostgreSQL prints it, each element in its type's text form.
pub(super) fn push_literal(
    elem: &PgType,
    items: &[Value],
    out: &mut String,
) -> Result<(), CodecError> {
    let delim = char::from(delimiter(elem));
    out.push('{');
    let mut text = String::new();
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(delim);
        }
        match item {
            Value::Null => out.push_str("NULL"),
            Value::Array(inner) => push_literal(elem, inner, out)?,
            v => {
                text.clear();
                encode_text(elem, v, &mut text)?;
                // Quoted exactly where PostgreSQL's array output quotes.
                let quote = text.is_empty()
                    || text.eq_ignore_ascii_case("NULL")
                    || text.chars().any(|c| {
                        matches!(
                            c,
                            '{' | '}' | '"' | '\\' | ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c'
                        ) || c == delim
                    });
                if !quote {
                    out.push_str(&text);
                    continue;
                }
                out.push('"');
                for c in text.chars() {
                    if c == '"' || c == '\\' {
                        out.push('\\');
                    }
                    out.push(c);
                }
                out.push('"');
            }
        }
    }
    out.push('}');
    Ok(())
}

/// The delimiter between the elements of an array of `elem` in text form
/// (`typdelim`): `;` for box, the one built-in type that has another, else `,`.
fn delimiter(elem: &PgType) -> u8 {
    if elem.oid == 603 {
        b';'
    } else {
        b','
    }
}

/// Reads the bounds decoration of an array's text form (`[0:1][-2:-1]=`), as
/// lower bounds, and the text after it.
fn parse_bounds(text: &str) -> Option<(Vec<i32>, &str)> {
    let mut lower = Vec::new();
    let mut s = text.trim_start();
    while let Some(rest) = s.strip_prefix('[') {
        let (range, rest) = rest.split_once(']')?;
        let (l, u) = range.split_once(':')?;
        let (l, u): (i32, i32) = (l.trim().parse().ok()?, u.trim().parse().ok()?);
        if u < l || lower.len() == MAX_DIMS {
            return None;
        }
        lower.push(l);
        s = rest.trim_start();
    }
    let rest = s.strip_prefix('=')?;
    (!lower.is_empty()).then_some((lower, rest))
}

/// The binary form of an array given in text form with bounds decoration
/// (`[0:1]={7,8}`, as [`decode_array`] and [`parse_array_text`] carry it).
pub(super) fn encode_array_text(
    ty: &PgType,
    text: &str,
    out: &mut Vec<u8>,
) -> Result<(), CodecError> {
    let (lower, body) = match parse_bounds(text) {
        Some((lower, body)) => (lower, body),
        None if text.trim_start().starts_with('{') => (Vec::new(), text),
        None => return Err(text_error(ty, text, "malformed array bounds")),
    };
    match parse_array_body(ty, text, body)? {
        Value::Array(items) => encode_array(ty, &items, &lower, out),
        _ => Err(text_error(ty, text, "malformed array")),
    }
}

pub(super) fn build_array(
    elem: &PgType,
    dims: &[usize],
    r: &mut Reader,
) -> Result<Value, Option<CodecError>> {
    let mut items = Vec::with_capacity(dims[0]);
    for _ in 0..dims[0] {
        if dims.len() > 1 {
            items.push(build_array(elem, &dims[1..], r)?);
            continue;
        }
        let len = r.i32().ok_or(None)?;
        if len == -1 {
            items.push(Value::Null);
            continue;
        }
        let len = usize::try_from(len).map_err(|_| None)?;
        let raw = r.take(len).ok_or(None)?;
        items.push(decode_binary(elem, raw).map_err(Some)?);
    }
    Ok(Value::Array(items))
}

pub(super) struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(super) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.b.len() < n {
            return None;
        }
        let (head, rest) = self.b.split_at(n);
        self.b = rest;
        Some(head)
    }
    pub(super) fn i32(&mut self) -> Option<i32> {
        self.take(4).map(|b| i32::from_be_bytes(arr(b)))
    }
}

/// Writes an array; `lower` holds the lower bound of each dimension (empty:
/// every lower bound is 1).
pub(super) fn encode_array(
    ty: &PgType,
    items: &[Value],
    lower: &[i32],
    out: &mut Vec<u8>,
) -> Result<(), CodecError> {
    let elem = element_of(ty)?;
    let ragged = |why: &str| CodecError::OutOfRange {
        ty: ty.name.clone(),
        value: format!("an array that {why}"),
    };
    let mut dims = [0usize; MAX_DIMS];
    let mut ndim = 0;
    let mut level = items;
    loop {
        if ndim == MAX_DIMS {
            return Err(ragged("has more than 6 dimensions"));
        }
        dims[ndim] = level.len();
        ndim += 1;
        match level.first() {
            Some(Value::Array(inner)) => level = inner,
            _ => break,
        }
    }
    if items.is_empty() {
        ndim = 0;
    }
    if dims[..ndim].iter().skip(1).any(|d| *d == 0) {
        return Err(ragged("holds an empty inner array"));
    }
    if !lower.is_empty() && lower.len() != ndim {
        return Err(ragged("has bounds for a different number of dimensions"));
    }
    out.extend_from_slice(&(ndim as i32).to_be_bytes());
    let flags_at = out.len();
    out.extend_from_slice(&0i32.to_be_bytes());
    out.extend_from_slice(&elem.oid.to_be_bytes());
    for (i, d) in dims[..ndim].iter().enumerate() {
        let d = i32::try_from(*d).map_err(|_| ragged("is too long"))?;
        out.extend_from_slice(&d.to_be_bytes());
        out.extend_from_slice(&lower.get(i).copied().unwrap_or(1).to_be_bytes());
    }
    if ndim == 0 {
        return Ok(());
    }
    let mut has_null = false;
    write_elements(elem, items, &dims[..ndim], out, &mut has_null).map_err(|e| {
        e.unwrap_or_else(|| ragged("is not rectangular (sub-arrays differ in length or depth)"))
    })?;
    if has_null {
        out[flags_at..flags_at + 4].copy_from_slice(&1i32.to_be_bytes());
    }
    Ok(())
}

/// `Err(None)` when the array is not rectangular.
pub(super) fn write_elements(
    elem: &PgType,
    items: &[Value],
    dims: &[usize],
    out: &mut Vec<u8>,
    has_null: &mut bool,
) -> Result<(), Option<CodecError>> {
    if items.len() != dims[0] {
        return Err(None);
    }
    for item in items {
        match (dims.len(), item) {
            (1, Value::Array(_)) => return Err(None),
            (1, Value::Null) => {
                *has_null = true;
                out.extend_from_slice(&(-1i32).to_be_bytes());
            }
            (1, v) => write_field(elem, v, out).map_err(Some)?,
            (_, Value::Array(inner)) => write_elements(elem, inner, &dims[1..], out, has_null)?,
            _ => return Err(None),
        }
    }
    Ok(())
}

/// A length-prefixed field: the length is written after the value, in place.
pub(crate) fn write_field(ty: &PgType, v: &Value, out: &mut Vec<u8>) -> Result<(), CodecError> {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    if let Err(e) = encode_binary(ty, v, out) {
        out.truncate(at);
        return Err(e);
    }
    let len = i32::try_from(out.len() - at - 4).map_err(|_| {
        out.truncate(at);
        CodecError::OutOfRange {
            ty: ty.name.clone(),
            value: "a value of 2 GiB or more".into(),
        }
    })?;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

/// Array text output: `{1,2,NULL}`, `{{1,2},{3,4}}`, `{"a b","c\"d"}`, `{}`,
/// as an `Array`; after bounds decoration (`[0:1]={5,6}`) the checked text
/// itself, as `Engine`, which keeps the bounds.
pub(super) fn parse_array_text(ty: &PgType, text: &str) -> Result<Value, CodecError> {
    let s = text.trim();
    if s.starts_with('[') {
        let (_, body) =
            parse_bounds(s).ok_or_else(|| text_error(ty, text, "malformed array bounds"))?;
        parse_array_body(ty, text, body)?;
        return Ok(Value::Engine {
            type_name: ty.name.clone(),
            text: s.to_string(),
        });
    }
    parse_array_body(ty, text, s)
}

/// The array literal `s` (part of `text`, named in errors) as an `Array`.
fn parse_array_body(ty: &PgType, text: &str, s: &str) -> Result<Value, CodecError> {
    let elem = element_of(ty)?;
    let err = |reason| text_error(ty, text, reason);
    let s = s.trim();
    let mut p = ArrayText {
        s: s.as_bytes(),
        i: 0,
        buf: String::new(),
    };
    if !p.eat(b'{') {
        return Err(err("expected `{`"));
    }
    let v = p
        .list(elem, 1)
        .map_err(|e| e.unwrap_or_else(|| err("malformed array")))?;
    p.skip_ws();
    if p.i != p.s.len() {
        return Err(err("text after the closing `}`"));
    }
    Ok(v)
}

pub(super) struct ArrayText<'a> {
    s: &'a [u8],
    i: usize,
    /// The current element, unescaped; reused across elements.
    buf: String,
}

impl ArrayText<'_> {
    pub(super) fn skip_ws(&mut self) {
        while self.s.get(self.i).is_some_and(u8::is_ascii_whitespace) {
            self.i += 1;
        }
    }
    pub(super) fn eat(&mut self, c: u8) -> bool {
        self.skip_ws();
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    /// The items of a list whose `{` has been read, up to and including its `}`.
    pub(super) fn list(
        &mut self,
        elem: &PgType,
        depth: usize,
    ) -> Result<Value, Option<CodecError>> {
        let mut items = Vec::new();
        if self.eat(b'}') {
            return Ok(Value::Array(items));
        }
        loop {
            if self.eat(b'{') {
                if depth >= MAX_DIMS {
                    return Err(None);
                }
                items.push(self.list(elem, depth + 1)?);
            } else {
                items.push(self.element(elem)?);
            }
            if self.eat(delimiter(elem)) {
                continue;
            }
            if self.eat(b'}') {
                return Ok(Value::Array(items));
            }
            return Err(None);
        }
    }

    pub(super) fn element(&mut self, elem: &PgType) -> Result<Value, Option<CodecError>> {
        self.skip_ws();
        self.buf.clear();
        let start = self.i;
        if self.s.get(self.i) == Some(&b'"') {
            self.i += 1;
            let mut run = self.i;
            loop {
                match self.s.get(self.i) {
                    None => return Err(None),
                    Some(b'"') => break,
                    Some(b'\\') => {
                        self.push_run(run)?;
                        self.i += 1;
                        run = self.i;
                        // The escaped byte (possibly the start of a multi-byte
                        // character) is kept by the next run.
                        if self.i >= self.s.len() {
                            return Err(None);
                        }
                        self.i += 1;
                    }
                    Some(_) => self.i += 1,
                }
            }
            self.push_run(run)?;
            self.i += 1;
        } else {
            let mut run = self.i;
            let mut escaped = false;
            loop {
                match self.s.get(self.i) {
                    None => return Err(None),
                    Some(&c) if c == b'}' || c == delimiter(elem) => break,
                    Some(b'{' | b'"') => return Err(None),
                    Some(b'\\') => {
                        self.push_run(run)?;
                        escaped = true;
                        self.i += 1;
                        run = self.i;
                        if self.i >= self.s.len() {
                            return Err(None);
                        }
                        self.i += 1;
                    }
                    Some(_) => self.i += 1,
                }
            }
            self.push_run(run)?;
            let trimmed = self
                .buf
                .trim_end_matches(|c: char| c.is_ascii_whitespace())
                .len();
            self.buf.truncate(trimmed);
            if self.i == start || (self.buf.is_empty() && !escaped) {
                return Err(None);
            }
            if !escaped && self.buf.eq_ignore_ascii_case("NULL") {
                return Ok(Value::Null);
            }
        }
        decode_text(elem, &self.buf).map_err(Some)
    }

    pub(super) fn push_run(&mut self, from: usize) -> Result<(), Option<CodecError>> {
        let run = std::str::from_utf8(&self.s[from..self.i]).map_err(|_| None)?;
        self.buf.push_str(run);
        Ok(())
    }
}
