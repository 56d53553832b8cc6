//! Generic reader for the TOML subset: text in, document tree out.
//!
//! Owns: the syntax (comments, `key = value` lines, `[table]` and
//! `[[array.of.tables]]` headers, strings, integers, booleans, arrays) and
//! syntax errors with line and column. Must not touch: meaning. Which keys
//! exist and what their values must be is the typed layer's business
//! (`crate::parse`), so new sections need no change here.
//!
//! Not supported (each reported as an error that says so): dotted or quoted
//! keys, literal `'strings'`, multi-line strings, negative numbers, floats,
//! dates, inline tables and nested arrays. The reader never recurses, so
//! hostile input cannot exhaust the stack, and every lookup is a B-tree
//! lookup, so large inputs cannot make it quadratic.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

/// A position in the text, both 1-based; the column counts characters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

/// A syntax error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

/// A value with the position where it starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spanned {
    pub value: Value,
    pub pos: Pos,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    String(String),
    Integer(u64),
    Bool(bool),
    /// Elements are strings, integers or booleans (no nested arrays).
    Array(Vec<Spanned>),
}

impl Value {
    /// "a string", "an integer", ... for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::String(_) => "a string",
            Value::Integer(_) => "an integer",
            Value::Bool(_) => "a boolean",
            Value::Array(_) => "an array",
        }
    }
}

/// What a key holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    Value(Spanned),
    /// A `[table]` (or a table created implicitly by a dotted header).
    Table(Table),
    /// An array of tables, one per `[[header]]`, in order of appearance.
    Array(Vec<Table>),
}

impl Item {
    /// `"a value"`, `"a [table]"`, `"an array of [[tables]]"` for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Item::Value(v) => v.value.kind(),
            Item::Table(_) => "a [table]",
            Item::Array(_) => "an array of [[tables]]",
        }
    }
}

/// A key with its position and what it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Where the key was written (for tables: their header).
    pub pos: Pos,
    pub item: Item,
}

/// A table: the document root, a `[table]` or one `[[array]]` element.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Table {
    /// Position of the header (`1:1` for the root).
    pub pos: Pos,
    pub entries: BTreeMap<String, Entry>,
    /// Whether a `[header]` names this table itself (not only a sub-table).
    explicit: bool,
}

impl Default for Pos {
    fn default() -> Self {
        Pos { line: 1, column: 1 }
    }
}

impl Table {
    fn new(pos: Pos, explicit: bool) -> Self {
        Table {
            pos,
            entries: BTreeMap::new(),
            explicit,
        }
    }

    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.get(key)
    }

    /// Entries in the order they appear in the text.
    pub fn entries_in_order(&self) -> Vec<(&str, &Entry)> {
        let mut v: Vec<_> = self.entries.iter().map(|(k, e)| (k.as_str(), e)).collect();
        v.sort_by_key(|(_, e)| e.pos);
        v
    }
}

/// Reads `text` into a document tree (the root table).
pub fn read(text: &str) -> Result<Table, SyntaxError> {
    let mut reader = Reader {
        text,
        pos: 0,
        line: 1,
        line_start: 0,
    };
    let mut root = Table::new(Pos::default(), true);
    // Path of the table the following `key = value` lines belong to.
    let mut current: Vec<String> = Vec::new();
    loop {
        reader.skip_blanks();
        reader.skip_comment();
        match reader.peek() {
            None => return Ok(root),
            Some('\n' | '\r') => reader.newline()?,
            Some('[') => {
                let header = reader.header()?;
                open_table(&mut root, &header.path, header.array, header.pos)?;
                current = header.path.into_iter().map(|(k, _)| k).collect();
                reader.end_of_line("table header")?;
            }
            Some(c) if is_key_char(c) => {
                let key_pos = reader.here();
                let key = reader.key()?;
                reader.skip_blanks();
                match reader.peek() {
                    Some('=') => reader.bump(),
                    Some('.') => return Err(reader.error("dotted keys are not supported")),
                    _ => {
                        return Err(reader.error(&format!(
                            "expected \"=\" after key \"{key}\" (write key = value)"
                        )))
                    }
                }
                reader.skip_blanks();
                let value = reader.value(false)?;
                let table = table_at(&mut root, &current).ok_or_else(|| SyntaxError {
                    pos: key_pos,
                    message: "internal error: current table vanished".to_string(),
                })?;
                if let Some(first) = table.entries.get(&key) {
                    return Err(SyntaxError {
                        pos: key_pos,
                        message: format!(
                            "duplicate key \"{key}\" (first set on line {}); remove one",
                            first.pos.line
                        ),
                    });
                }
                table.entries.insert(
                    key,
                    Entry {
                        pos: key_pos,
                        item: Item::Value(value),
                    },
                );
                reader.end_of_line("value")?;
            }
            Some('"' | '\'') => return Err(reader.error("quoted keys are not supported")),
            Some(c) => {
                return Err(reader.error(&format!(
                    "unexpected {c:?}: expected a key, a [table] header or a # comment"
                )))
            }
        }
    }
}

/// The table reached by walking `path` from `root` (arrays: their last
/// element), without creating anything.
fn table_at<'t>(root: &'t mut Table, path: &[String]) -> Option<&'t mut Table> {
    let mut table = root;
    for key in path {
        table = match &mut table.entries.get_mut(key)?.item {
            Item::Table(t) => t,
            Item::Array(tables) => tables.last_mut()?,
            Item::Value(_) => return None,
        };
    }
    Some(table)
}

/// Creates the table a header names; parent tables are created implicitly.
fn open_table(
    root: &mut Table,
    path: &[(String, Pos)],
    array: bool,
    pos: Pos,
) -> Result<(), SyntaxError> {
    let Some(((last, _), parents)) = path.split_last() else {
        return Err(SyntaxError {
            pos,
            message: "empty table header".to_string(),
        });
    };
    let mut table = root;
    for (key, key_pos) in parents {
        let entry = table.entries.entry(key.clone()).or_insert_with(|| Entry {
            pos: *key_pos,
            item: Item::Table(Table::new(*key_pos, false)),
        });
        let line = entry.pos.line;
        table = match &mut entry.item {
            Item::Table(t) => t,
            Item::Array(tables) => match tables.last_mut() {
                Some(t) => t,
                None => return Err(conflict(pos, key, "an empty array", line)),
            },
            Item::Value(v) => return Err(conflict(pos, key, v.value.kind(), line)),
        };
    }
    match table.entries.get_mut(last) {
        None => {
            let item = if array {
                Item::Array(Vec::from([Table::new(pos, true)]))
            } else {
                Item::Table(Table::new(pos, true))
            };
            table.entries.insert(last.clone(), Entry { pos, item });
            Ok(())
        }
        Some(entry) => match (&mut entry.item, array) {
            (Item::Array(tables), true) => {
                tables.push(Table::new(pos, true));
                Ok(())
            }
            (Item::Table(t), false) if !t.explicit => {
                t.explicit = true;
                t.pos = pos;
                Ok(())
            }
            (Item::Table(_), false) => Err(SyntaxError {
                pos,
                message: format!(
                    "table [{last}] is defined twice (first on line {})",
                    entry.pos.line
                ),
            }),
            (item, _) => Err(conflict(pos, last, item.kind(), entry.pos.line)),
        },
    }
}

fn conflict(pos: Pos, key: &str, kind: &str, line: usize) -> SyntaxError {
    SyntaxError {
        pos,
        message: format!(
            "header conflicts with \"{key}\", which is {kind} (defined on line {line})"
        ),
    }
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// A parsed `[a.b]` or `[[a.b]]` header.
struct Header {
    /// Keys with their positions.
    path: Vec<(String, Pos)>,
    /// `[[...]]`: an array-of-tables element.
    array: bool,
    pos: Pos,
}

/// Character cursor over the text that tracks lines.
struct Reader<'t> {
    text: &'t str,
    /// Byte offset of the next character.
    pos: usize,
    line: usize,
    /// Byte offset where the current line starts.
    line_start: usize,
}

impl Reader<'_> {
    fn peek(&self) -> Option<char> {
        self.text.get(self.pos..)?.chars().next()
    }

    fn peek_second(&self) -> Option<char> {
        let mut chars = self.text.get(self.pos..)?.chars();
        chars.next();
        chars.next()
    }

    fn bump(&mut self) {
        if let Some(c) = self.peek() {
            self.pos += c.len_utf8();
            if c == '\n' {
                self.line += 1;
                self.line_start = self.pos;
            }
        }
    }

    fn here(&self) -> Pos {
        let column = self
            .text
            .get(self.line_start..self.pos)
            .map_or(1, |s| s.chars().count() + 1);
        Pos {
            line: self.line,
            column,
        }
    }

    fn error(&self, message: &str) -> SyntaxError {
        SyntaxError {
            pos: self.here(),
            message: message.to_string(),
        }
    }

    fn skip_blanks(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t')) {
            self.bump();
        }
    }

    fn skip_comment(&mut self) {
        if self.peek() == Some('#') {
            while !matches!(self.peek(), None | Some('\n' | '\r')) {
                self.bump();
            }
        }
    }

    /// Consumes `\n` or `\r\n`.
    fn newline(&mut self) -> Result<(), SyntaxError> {
        if self.peek() == Some('\r') {
            if self.peek_second() != Some('\n') {
                return Err(self.error("carriage return without line feed"));
            }
            self.bump();
        }
        self.bump();
        Ok(())
    }

    /// After a value or header only blanks and a comment may follow.
    fn end_of_line(&mut self, after: &str) -> Result<(), SyntaxError> {
        self.skip_blanks();
        self.skip_comment();
        match self.peek() {
            None => Ok(()),
            Some('\n' | '\r') => self.newline(),
            Some(c) => Err(self.error(&format!(
                "unexpected {c:?} after the {after}: one entry per line, comments start with #"
            ))),
        }
    }

    /// Skips blanks, newlines and comments (inside arrays).
    fn skip_space(&mut self) -> Result<(), SyntaxError> {
        loop {
            self.skip_blanks();
            self.skip_comment();
            match self.peek() {
                Some('\n' | '\r') => self.newline()?,
                _ => return Ok(()),
            }
        }
    }

    fn key(&mut self) -> Result<String, SyntaxError> {
        let start = self.pos;
        while self.peek().is_some_and(is_key_char) {
            self.bump();
        }
        match self.text.get(start..self.pos) {
            Some(key) if !key.is_empty() => Ok(key.to_string()),
            _ => Err(self.error("expected a key (letters, digits, _ and -)")),
        }
    }

    /// `[a.b]` or `[[a.b]]`, returning the path and whether it is an array.
    fn header(&mut self) -> Result<Header, SyntaxError> {
        let pos = self.here();
        self.bump();
        let array = self.peek() == Some('[');
        if array {
            self.bump();
        }
        let mut path = Vec::new();
        loop {
            self.skip_blanks();
            if matches!(self.peek(), Some('"' | '\'')) {
                return Err(self.error("quoted keys are not supported"));
            }
            let key_pos = self.here();
            path.push((self.key()?, key_pos));
            self.skip_blanks();
            match self.peek() {
                Some('.') => self.bump(),
                Some(']') => break,
                _ => {
                    return Err(self.error(if array {
                        "expected \".\" or \"]]\" in [[table]] header"
                    } else {
                        "expected \".\" or \"]\" in [table] header"
                    }))
                }
            }
        }
        self.bump();
        if array {
            if self.peek() != Some(']') {
                return Err(self.error("expected \"]]\" to close the [[table]] header"));
            }
            self.bump();
        }
        Ok(Header { path, array, pos })
    }

    /// A value; `in_array` forbids nested arrays.
    fn value(&mut self, in_array: bool) -> Result<Spanned, SyntaxError> {
        let pos = self.here();
        let value = match self.peek() {
            Some('"') => Value::String(self.string()?),
            Some('[') if in_array => {
                return Err(self.error("nested arrays are not supported"));
            }
            Some('[') => Value::Array(self.array()?),
            Some('\'') => {
                return Err(self.error("literal 'strings' are not supported; use \"double quotes\""))
            }
            Some('{') => return Err(self.error("inline tables are not supported")),
            Some('-') => return Err(self.error("negative numbers are not supported")),
            Some(c) if c.is_ascii_digit() || c == '+' => {
                let word = self.word();
                Value::Integer(parse_integer(word).map_err(|m| SyntaxError { pos, message: m })?)
            }
            Some(c) if c.is_ascii_alphabetic() => match self.word() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                word => {
                    return Err(SyntaxError {
                        pos,
                        message: format!(
                            "{word:?} is not a value; strings need double quotes, \
                             booleans are true or false"
                        ),
                    })
                }
            },
            None | Some('\n' | '\r' | '#') => {
                return Err(self.error("missing value after \"=\""));
            }
            Some(c) => {
                return Err(self.error(&format!(
                "unexpected {c:?}: expected a value (\"string\", integer, true/false or [array])"
            )))
            }
        };
        Ok(Spanned { value, pos })
    }

    /// A run of characters that can form a bare word or number.
    fn word(&mut self) -> &str {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '.' | '-'))
        {
            self.bump();
        }
        self.text.get(start..self.pos).unwrap_or("")
    }

    fn string(&mut self) -> Result<String, SyntaxError> {
        let open = self.here();
        self.bump();
        let mut out = String::new();
        loop {
            match self.peek() {
                None | Some('\n' | '\r') => {
                    return Err(SyntaxError {
                        pos: open,
                        message: "unterminated string: close it with \" on the same line"
                            .to_string(),
                    })
                }
                Some('"') => {
                    self.bump();
                    return Ok(out);
                }
                Some('\\') => {
                    self.bump();
                    let escaped = match self.peek() {
                        Some('"') => '"',
                        Some('\\') => '\\',
                        Some('n') => '\n',
                        Some('t') => '\t',
                        other => {
                            let shown =
                                other.map_or("end of line".to_string(), |c| format!("\\{c}"));
                            return Err(self.error(&format!(
                                "unsupported escape {shown} (use \\\" \\\\ \\n or \\t)"
                            )));
                        }
                    };
                    out.push(escaped);
                    self.bump();
                }
                Some(c) if c.is_control() && c != '\t' => {
                    return Err(self.error(&format!(
                        "control character {c:?} in string (use an escape)"
                    )));
                }
                Some(c) => {
                    out.push(c);
                    self.bump();
                }
            }
        }
    }

    fn array(&mut self) -> Result<Vec<Spanned>, SyntaxError> {
        let open = self.here();
        self.bump();
        let mut items = Vec::new();
        let unterminated = || SyntaxError {
            pos: open,
            message: "unterminated array: close it with ]".to_string(),
        };
        loop {
            self.skip_space()?;
            match self.peek() {
                None => return Err(unterminated()),
                Some(']') => {
                    self.bump();
                    return Ok(items);
                }
                Some(_) => {}
            }
            items.push(self.value(true)?);
            self.skip_space()?;
            match self.peek() {
                Some(',') => self.bump(),
                Some(']') => {
                    self.bump();
                    return Ok(items);
                }
                None => return Err(unterminated()),
                Some(c) => {
                    return Err(self.error(&format!(
                        "unexpected {c:?} in array: separate elements with \",\" and close with ]"
                    )))
                }
            }
        }
    }
}

/// Decimal (`4096`, `1_000`) or hexadecimal (`0x1000`, `0xffff_0000`).
pub fn parse_integer(word: &str) -> Result<u64, String> {
    let looks_like_size = word.len() > 1
        && word.starts_with(|c: char| c.is_ascii_digit())
        && word.ends_with(['K', 'M', 'G', 'k', 'm', 'g']);
    let invalid = || {
        let hint = if looks_like_size {
            "; a size with a suffix is a string: write it in quotes, e.g. \"4M\""
        } else {
            ""
        };
        format!(
            "{word:?} is not a valid integer (write decimal like 4096 or hex like 0x1000){hint}"
        )
    };
    let digits = word.strip_prefix('+').unwrap_or(word);
    let (digits, radix) = match digits.strip_prefix("0x") {
        Some(hex) => (hex, 16),
        None => (digits, 10),
    };
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
    {
        return Err(invalid());
    }
    let mut value: u64 = 0;
    for c in digits.chars().filter(|&c| c != '_') {
        let digit = c.to_digit(radix).ok_or_else(invalid)?;
        value = value
            .checked_mul(u64::from(radix))
            .and_then(|v| v.checked_add(u64::from(digit)))
            .ok_or_else(|| format!("{word:?} is too large (at most {})", u64::MAX))?;
    }
    Ok(value)
}
