//! Text for the terminal: what a producer's text may show of itself
//! ([`escape_controls`]), lines of styled spans cut to a width in columns, and the
//! human forms of counts, sizes, rates and durations (`1.2k`, `3.4 MiB/s`, `1m05s`).

use std::borrow::Cow;
use std::fmt::Write as _;

use unicode_width::UnicodeWidthChar;

/// `text` made safe to show on a terminal: every character that would act on the
/// terminal instead of being shown is written out as an escape, so that a run name,
/// an item id, an error or streamed text can neither move the cursor, retitle the
/// window, clear the screen nor reorder what is shown around it.
///
/// Escaped are the C0 controls (U+0000 to U+001F), DEL, the C1 controls (U+0080 to
/// U+009F) and the bidirectional embeddings, overrides and isolates (U+202A to U+202E,
/// U+2066 to U+2069, the "Trojan Source" characters). A line feed, a carriage return
/// and a tab are shown as `\n`, `\r` and `\t`; the other C0 controls and DEL as
/// `\x1b`, `\x7f`; C1 and BiDi controls as `\u{9b}`, `\u{202e}`. Everything else, backslashes included, is left
/// as it is: this is for people to read, not a reversible encoding. Text without such
/// characters is returned as it is, without copying.
///
/// A line break is escaped too: in a single-line place (a bar, a table cell) a break
/// would tear the layout. Where a multi-line message is welcome, split it into lines
/// first and escape each one, as the bars do for the messages they print above
/// themselves.
///
/// ```
/// assert_eq!(herald::escape_controls("a\x1b]0;pwned\x07b"), "a\\x1b]0;pwned\\x07b");
/// assert_eq!(herald::escape_controls("two\nlines"), "two\\nlines");
/// assert_eq!(herald::escape_controls("abc\u{202e}fed"), "abc\\u{202e}fed");
/// assert_eq!(herald::escape_controls("déjà vu · 日本"), "déjà vu · 日本");
/// ```
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    let Some(first) = text.find(is_escaped) else {
        return Cow::Borrowed(text);
    };
    let mut out = String::with_capacity(text.len() + 8);
    out.push_str(&text[..first]);
    for c in text[first..].chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0'..='\x1f' | '\x7f' => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if is_escaped(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Whether [`escape_controls`] writes `c` out as an escape.
fn is_escaped(c: char) -> bool {
    matches!(
        c,
        '\0'..='\x1f' | '\x7f'..='\u{9f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
    )
}

/// How a span looks. Colors are written only when the sink may use them (`NO_COLOR`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Style {
    Plain,
    Bold,
    Dim,
    Green,
    Red,
    Yellow,
    Cyan,
}

impl Style {
    /// The SGR parameter that turns the style on.
    fn sgr(self) -> Option<&'static str> {
        match self {
            Style::Plain => None,
            Style::Bold => Some("1"),
            Style::Dim => Some("2"),
            Style::Green => Some("32"),
            Style::Red => Some("31"),
            Style::Yellow => Some("33"),
            Style::Cyan => Some("36"),
        }
    }
}

/// One line of output under construction: spans of text, each in one style.
#[derive(Clone, Debug, Default)]
pub(super) struct Line {
    spans: Vec<(Style, String)>,
}

impl Line {
    pub(super) fn new() -> Line {
        Line::default()
    }

    /// Appends `text` in `style`, its control characters escaped
    /// ([`escape_controls`]): a producer's text must not move the cursor or change
    /// colors on its own, and must show that it tried.
    pub(super) fn push(&mut self, style: Style, text: &str) -> &mut Line {
        if !text.is_empty() {
            self.spans.push((style, escape_controls(text).into_owned()));
        }
        self
    }

    /// Appends the spans of `other`.
    pub(super) fn extend(&mut self, other: Line) -> &mut Line {
        self.spans.extend(other.spans);
        self
    }

    pub(super) fn plain(&mut self, text: &str) -> &mut Line {
        self.push(Style::Plain, text)
    }

    /// Appends the dim ` · ` that separates the parts of a line.
    pub(super) fn sep(&mut self) -> &mut Line {
        self.push(Style::Dim, " · ")
    }

    /// Pads with spaces to `columns` wide.
    pub(super) fn pad_to(&mut self, columns: usize) -> &mut Line {
        let missing = columns.saturating_sub(self.width());
        self.push(Style::Plain, &" ".repeat(missing))
    }

    pub(super) fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Columns the line takes on a terminal.
    pub(super) fn width(&self) -> usize {
        self.spans.iter().map(|(_, text)| columns(text)).sum()
    }

    /// The line as written: cut to `width` columns with `…` marking the cut (never
    /// wrapped), with colors when `color`.
    pub(super) fn finish(&self, width: usize, color: bool) -> String {
        // Keep one column for the ellipsis when the line must be cut.
        let limit = if self.width() > width {
            width.saturating_sub(1)
        } else {
            usize::MAX
        };
        let mut out = String::new();
        let mut used = 0;
        let mut cut = false;
        for (style, text) in &self.spans {
            let mut piece = String::new();
            let mut prev = None;
            for c in text.chars() {
                let w = char_columns(c, prev);
                if used + w > limit {
                    cut = true;
                    break;
                }
                used += w;
                piece.push(c);
                prev = Some(c);
            }
            push_styled(&mut out, *style, &piece, color);
            if cut {
                break;
            }
        }
        if cut && width > 0 {
            out.push('…');
        }
        out
    }
}

fn push_styled(out: &mut String, style: Style, text: &str, color: bool) {
    match style.sgr().filter(|_| color && !text.is_empty()) {
        Some(sgr) => {
            let _ = write!(out, "\x1b[{sgr}m{text}\x1b[0m");
        }
        None => out.push_str(text),
    }
}

/// The start of `s` in at most `max` columns, with `…` marking a cut at its end.
pub(super) fn head(s: &str, max: usize) -> String {
    if columns(s) <= max {
        return s.to_owned();
    }
    if max == 0 {
        return String::new();
    }
    let mut used = 1;
    let mut out = String::new();
    let mut prev = None;
    for c in s.chars() {
        let w = char_columns(c, prev);
        if used + w > max {
            break;
        }
        used += w;
        out.push(c);
        prev = Some(c);
    }
    // `demo: triage…`, not `demo: triage …`.
    out.truncate(out.trim_end().len());
    out.push('…');
    out
}

/// The end of `s` in at most `max` columns, with `…` marking a cut at its start.
pub(super) fn tail(s: &str, max: usize) -> String {
    if columns(s) <= max {
        return s.to_owned();
    }
    if max == 0 {
        return String::new();
    }
    let mut used = 1;
    let mut start = s.len();
    for (i, c) in s.char_indices().rev() {
        let w = char_columns(c, s[..i].chars().next_back());
        if used + w > max {
            break;
        }
        used += w;
        start = i;
    }
    format!("…{}", &s[start..])
}

/// Columns `s` takes on a terminal.
pub(super) fn columns(s: &str) -> usize {
    let mut prev = None;
    s.chars()
        .map(|c| {
            let w = char_columns(c, prev);
            prev = Some(c);
            w
        })
        .sum()
}

/// Columns of `c` after `prev`. Counted per character, which never undercounts except
/// for an emoji made wide by a variation selector (`❤` + U+FE0F): that one is counted
/// here, so a cut line cannot spill into the next row.
fn char_columns(c: char, prev: Option<char>) -> usize {
    if c == '\u{FE0F}' {
        return prev.map_or(0, |p| usize::from(p.width() == Some(1)));
    }
    c.width().unwrap_or(0)
}

/// A count for people: exact below 1000, then `1.2k`, `34.5k`, `345k`, `3.4M`, ...
pub(super) fn count(n: u64) -> String {
    if n < 1000 {
        return n.to_string();
    }
    scaled(n as f64, 1000.0, &["", "k", "M", "G", "T", "P", "E"], "")
}

/// `1 item`, `2 items`, `1.2k items`: a count and its noun, singular for one.
pub(super) fn counted(n: u64, one: &str, many: &str) -> String {
    format!("{} {}", count(n), if n == 1 { one } else { many })
}

/// A number of bytes for people: `512 B`, `1.2 KiB`, `3.4 MiB`.
fn bytes(n: f64) -> String {
    if n < 1024.0 {
        return format!("{} B", n.round() as u64);
    }
    scaled(
        n,
        1024.0,
        &[" B", " KiB", " MiB", " GiB", " TiB", " PiB", " EiB"],
        "",
    )
}

/// `n` in the largest unit of `units` (each `step` times the last) that keeps it at
/// least 1: one decimal below 100, none above, so the text stays short.
fn scaled(n: f64, step: f64, units: &[&str], suffix: &str) -> String {
    let mut value = n;
    let mut unit = 0;
    while unit + 1 < units.len() {
        // Move up when the value would print as 1000 (or 1024) in this unit.
        let shown = if value < 100.0 {
            (value * 10.0).round() / 10.0
        } else {
            value.round()
        };
        if shown < step {
            break;
        }
        value /= step;
        unit += 1;
    }
    if value < 100.0 && unit > 0 {
        format!("{value:.1}{}{suffix}", units[unit])
    } else {
        format!("{}{}{suffix}", value.round() as u64, units[unit])
    }
}

/// Whether `unit` counts bytes, which get binary prefixes.
pub(super) fn is_bytes(unit: Option<&str>) -> bool {
    matches!(unit, Some("B" | "bytes"))
}

/// An amount of `unit`: `42 docs`, `1.2k`, `3.4 MiB`.
pub(super) fn amount(n: u64, unit: Option<&str>) -> String {
    match unit {
        _ if is_bytes(unit) => bytes(n as f64),
        Some(unit) => format!("{} {unit}", count(n)),
        None => count(n),
    }
}

/// `done/total` with the unit once: exact while the total is small, so the last few
/// units are seen moving; `12.3k/40.0k` when it is large.
pub(super) fn fraction(done: u64, total: u64, unit: Option<&str>) -> String {
    if is_bytes(unit) {
        return format!("{}/{}", bytes(done as f64), bytes(total as f64));
    }
    let (done, total) = if total < 10_000 {
        (done.to_string(), total.to_string())
    } else {
        (count(done), count(total))
    };
    match unit {
        Some(unit) => format!("{done}/{total} {unit}"),
        None => format!("{done}/{total}"),
    }
}

/// The widest [`fraction`] of `total` can get as its count grows: the count is
/// measured at its widest (`1023 MiB`, `12.3k`), so that a layout made from it holds.
pub(super) fn fraction_widest(total: u64, unit: Option<&str>) -> usize {
    if is_bytes(unit) {
        return 8 + 1 + columns(&bytes(total as f64));
    }
    let (done, total) = if total < 10_000 {
        let digits = total.to_string().len();
        (digits, digits)
    } else {
        (5, columns(&count(total)))
    };
    done + 1 + total + unit.map_or(0, |u| 1 + columns(u))
}

/// A rate of `unit` per second: `3.1/s`, `12/s`, `1.2k/s`, `4.0 MiB/s`; per minute
/// when below one a second (`2.5/min`), which is how slow agent steps read best.
pub(super) fn rate(per_s: f64, unit: Option<&str>) -> String {
    let per_s = if per_s.is_finite() {
        per_s.max(0.0)
    } else {
        0.0
    };
    if is_bytes(unit) {
        return format!("{}/s", bytes(per_s));
    }
    if per_s >= 1.0 {
        if per_s < 10.0 {
            format!("{per_s:.1}/s")
        } else if per_s < 1000.0 {
            format!("{}/s", per_s.round() as u64)
        } else {
            format!("{}/s", scaled(per_s, 1000.0, &["", "k", "M", "G", "T"], ""))
        }
    } else {
        let per_min = per_s * 60.0;
        if per_min >= 10.0 {
            format!("{}/min", per_min.round() as u64)
        } else {
            format!("{per_min:.1}/min")
        }
    }
}

/// The time left as every view of herald shows it (the bars, `herald watch`): the
/// range when it is wide, `ETA 3–5 min`, and the point when it is narrow, `ETA 42s`.
///
/// A range is wide when its ends are a quarter of the point or more apart; it is
/// rounded outwards in the unit of its high end (seconds under 100 s, minutes under
/// 100 min, hours under 2 days, else days). The dashboard's `etaText`
/// (assets/dom.js) follows the same rule.
pub fn eta_text(eta_s: f64, low_s: Option<f64>, high_s: Option<f64>) -> String {
    let eta = if eta_s.is_finite() {
        eta_s.max(0.0)
    } else {
        0.0
    };
    let low = low_s.filter(|x| x.is_finite()).unwrap_or(eta).min(eta);
    let high = high_s.filter(|x| x.is_finite()).unwrap_or(eta).max(eta);
    if high - low >= 0.25 * eta && high - low > 0.0 {
        let (scale, unit) = if high < 100.0 {
            (1.0, "s")
        } else if high < 100.0 * 60.0 {
            (60.0, " min")
        } else if high < 48.0 * 3600.0 {
            (3600.0, " h")
        } else {
            (86_400.0, " d")
        };
        let (lo, hi) = ((low / scale).floor(), (high / scale).ceil());
        return format!("ETA {lo}–{hi}{unit}");
    }
    format!("ETA {}", duration(eta))
}

/// What a counter whose current unit is overdue says instead of trusting its ETA:
/// `current item running 20s, typically 0.1s`.
pub fn overdue_text(running_s: f64, typical_s: f64) -> String {
    format!(
        "current item running {}, typically {}",
        duration(running_s),
        duration(typical_s)
    )
}

/// A duration for people: `0.4s`, `42s`, `1m05s`, `2h03m`, `3d04h`.
pub(super) fn duration(secs: f64) -> String {
    let secs = if secs.is_finite() { secs.max(0.0) } else { 0.0 };
    if secs < 10.0 {
        // Tenths, floored, so a live counter never shows 10.0s before 10s.
        return format!("{:.1}s", (secs * 10.0).floor() / 10.0);
    }
    let whole = secs as u64;
    match whole {
        0..60 => format!("{whole}s"),
        60..3600 => format!("{}m{:02}s", whole / 60, whole % 60),
        3600..360_000 => format!("{}h{:02}m", whole / 3600, whole % 3600 / 60),
        _ => format!("{}d{:02}h", whole / 86_400, whole % 86_400 / 3600),
    }
}

/// A percentage, floored so a bar never reads 100% before it is done: ` 40%`.
pub(super) fn percent(p: f64) -> String {
    let p = if p.is_finite() {
        p.clamp(0.0, 100.0)
    } else {
        0.0
    };
    format!("{:>3}%", p.floor() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts() {
        let cases = [
            (0, "0"),
            (999, "999"),
            (1000, "1.0k"),
            (1234, "1.2k"),
            (34_567, "34.6k"),
            (345_678, "346k"),
            (999_499, "999k"),
            (999_999, "1.0M"),
            (3_400_000, "3.4M"),
            (u64::MAX, "18.4E"),
        ];
        for (n, expected) in cases {
            assert_eq!(count(n), expected, "count({n})");
        }
    }

    #[test]
    fn amounts_fractions_and_rates() {
        assert_eq!(amount(42, Some("docs")), "42 docs");
        assert_eq!(amount(3_565_158, Some("B")), "3.4 MiB");
        assert_eq!(amount(512, Some("B")), "512 B");
        assert_eq!(fraction(40, 100, Some("docs")), "40/100 docs");
        assert_eq!(fraction(12_345, 40_000, None), "12.3k/40.0k");
        assert_eq!(fraction(0, 0, None), "0/0");
        assert_eq!(fraction(1024, 2048, Some("B")), "1.0 KiB/2.0 KiB");
        assert_eq!(rate(3.12, None), "3.1/s");
        assert_eq!(rate(42.4, None), "42/s");
        assert_eq!(rate(1234.0, None), "1.2k/s");
        assert_eq!(rate(0.05, None), "3.0/min");
        assert_eq!(rate(0.5, None), "30/min");
        assert_eq!(rate(f64::NAN, None), "0.0/min");
        assert_eq!(rate(4.0 * 1024.0 * 1024.0, Some("B")), "4.0 MiB/s");
    }

    #[test]
    fn durations() {
        let cases = [
            (0.0, "0.0s"),
            (0.44, "0.4s"),
            (9.99, "9.9s"),
            (42.7, "42s"),
            (65.0, "1m05s"),
            (3599.0, "59m59s"),
            (7380.0, "2h03m"),
            (76.0 * 3600.0, "76h00m"),
            (5.0 * 86_400.0 + 4.0 * 3600.0, "5d04h"),
            (-5.0, "0.0s"),
            (f64::INFINITY, "0.0s"),
        ];
        for (secs, expected) in cases {
            assert_eq!(duration(secs), expected, "duration({secs})");
        }
        assert_eq!(percent(39.99), " 39%");
        assert_eq!(percent(100.0), "100%");
        assert_eq!(percent(250.0), "100%");
    }

    #[test]
    fn etas_show_a_range_when_it_is_wide() {
        let cases = [
            // A point, or a range too narrow to matter.
            (42.0, None, None, "ETA 42s"),
            (42.0, Some(40.0), Some(45.0), "ETA 42s"),
            (0.0, Some(0.0), Some(0.0), "ETA 0.0s"),
            // Wide: rounded outwards in the unit of the high end.
            (30.0, Some(20.0), Some(40.5), "ETA 20–41s"),
            (240.0, Some(180.0), Some(300.0), "ETA 3–5 min"),
            (240.0, Some(150.0), Some(290.0), "ETA 2–5 min"),
            (
                3.0 * 3600.0,
                Some(2.0 * 3600.0),
                Some(4.0 * 3600.0),
                "ETA 2–4 h",
            ),
            (
                3.0 * 86_400.0,
                Some(2.0 * 86_400.0),
                Some(5.0 * 86_400.0),
                "ETA 2–5 d",
            ),
            (6000.0, Some(4600.0), Some(7100.0), "ETA 1–2 h"),
            // Ends out of order or not numbers are not trusted beyond the point.
            (60.0, Some(90.0), Some(30.0), "ETA 1m00s"),
            (60.0, Some(f64::NAN), Some(f64::INFINITY), "ETA 1m00s"),
        ];
        for (eta, low, high, expected) in cases {
            assert_eq!(eta_text(eta, low, high), expected, "{eta} {low:?} {high:?}");
        }
        assert_eq!(
            overdue_text(20.0, 0.1),
            "current item running 20s, typically 0.1s"
        );
    }

    #[track_caller]
    fn check_cut(text: &str, width: usize, expected: &str) {
        let mut line = Line::new();
        line.plain(text);
        let cut = line.finish(width, false);
        assert_eq!(cut, expected);
        assert!(columns(&cut) <= width, "{cut:?} is wider than {width}");
    }

    #[test]
    fn lines_are_cut_to_the_width_in_columns() {
        check_cut("short", 10, "short");
        check_cut("exactly10!", 10, "exactly10!");
        check_cut("eleven char", 10, "eleven ch…");
        // Wide characters take two columns: a cut never splits one.
        check_cut("日本語のテキスト", 7, "日本語…");
        check_cut("日本語のテキスト", 8, "日本語…");
        check_cut("ab😀😀😀", 5, "ab😀…");
        check_cut("❤\u{FE0F}❤\u{FE0F}❤\u{FE0F}", 5, "❤\u{FE0F}❤\u{FE0F}…");
        check_cut("anything", 0, "");
        assert_eq!(tail("the newest words", 10), "…est words");
        assert_eq!(tail("the newest words", 16), "the newest words");
        assert_eq!(tail("最新の言葉", 6), "…言葉");
        assert_eq!(tail("anything", 0), "");
        // Control characters cannot reach the terminal: they are shown escaped.
        check_cut("a\x1b[2Jb\tc\r\n", 20, "a\\x1b[2Jb\\tc\\r\\n");
        // An escape counts the columns it is shown in.
        check_cut("ab\x07cd", 6, "ab\\x0…");
    }

    #[track_caller]
    fn check_escape(text: &str, expected: &str) {
        let escaped = escape_controls(text);
        assert_eq!(escaped, expected);
        assert!(
            !escaped.chars().any(is_escaped),
            "{escaped:?} still holds a control"
        );
    }

    #[test]
    fn controls_are_shown_escaped() {
        check_escape("plain text", "plain text");
        check_escape("\x1b]0;pwned\x07", "\\x1b]0;pwned\\x07");
        check_escape("\x1b[2J\x1b[H", "\\x1b[2J\\x1b[H");
        check_escape("a\rb\nc\td", "a\\rb\\nc\\td");
        check_escape("\0\x7f", "\\x00\\x7f");
        // C1: U+009B is a CSI of its own on terminals that take 8-bit controls.
        check_escape("\u{9b}2J\u{85}\u{80}", "\\u{9b}2J\\u{85}\\u{80}");
        check_escape(
            "\u{202a}\u{202b}\u{202c}\u{202d}\u{202e}\u{2066}\u{2067}\u{2068}\u{2069}",
            "\\u{202a}\\u{202b}\\u{202c}\\u{202d}\\u{202e}\\u{2066}\\u{2067}\\u{2068}\\u{2069}",
        );
        // What is text stays as it is: accents, wide characters, emoji, backslashes,
        // and the characters just outside the escaped ranges.
        check_escape(
            "é 日本 ❤\u{FE0F} C:\\dir \u{a0}\u{2029}\u{2070}",
            "é 日本 ❤\u{FE0F} C:\\dir \u{a0}\u{2029}\u{2070}",
        );
        assert!(matches!(escape_controls("clean"), Cow::Borrowed(_)));
    }

    #[test]
    fn colors_only_when_asked() {
        let mut line = Line::new();
        line.push(Style::Red, "failed").plain(" here");
        assert_eq!(line.finish(80, true), "\x1b[31mfailed\x1b[0m here");
        assert_eq!(line.finish(80, false), "failed here");
        // The cut counts columns of text, not the bytes of escape codes.
        assert_eq!(line.finish(8, true), "\x1b[31mfailed\x1b[0m …");
    }
}
