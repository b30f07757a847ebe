//! Which build arguments a Dockerfile declares.
//!
//! A build key must change with every build argument that can change the image, and must not
//! change with anything else. The environment a deployer runs in holds many variables a build
//! never sees; the Dockerfile's `ARG` instructions are the allowlist (as sccache keeps an
//! explicit allowlist of the environment variables that count). [`declared_args`] reads that
//! allowlist and `build_args_from_env` takes just those variables from an environment.
//!
//! The scan follows BuildKit's Dockerfile parser where it matters for finding `ARG`:
//!
//! - parser directives at the top of the file (`# escape=``\``` changes the escape character);
//! - instruction keywords are case-insensitive and may be indented;
//! - a line ending in the escape character (trailing blanks allowed) continues on the next
//!   line; comment lines and empty lines inside a continued instruction are skipped;
//! - comment lines (`#` as first non-blank character) are ignored;
//! - the body of a heredoc (`RUN <<EOF`, `<<-EOF`, `<<"EOF"`, `COPY <<EOF /file`) is content,
//!   not instructions, up to its terminator line;
//! - `ARG A=1 B "C"=…` declares every word's name, the part before `=`; quoted values may hold
//!   blanks.
//!
//! Names outside `[A-Za-z_][A-Za-z0-9_]*` are skipped, as are `ARG`s inside `ONBUILD` (they
//! belong to a later build). The scan never fails: text Docker would reject yields whatever
//! names can still be read, and never a panic.

use std::collections::{BTreeMap, BTreeSet};

/// The names declared by every `ARG` instruction of `dockerfile`, in every stage, including
/// the `ARG`s before the first `FROM`.
///
/// See the [module documentation](self) for the syntax understood. Invalid names are skipped;
/// this function never fails and never panics.
///
/// ```
/// use mirror_core::builder::dockerfile::declared_args;
/// let args = declared_args("ARG BASE=debian\nFROM $BASE\narg VERSION=\"1 2\" DEBUG\n");
/// assert_eq!(args.into_iter().collect::<Vec<_>>(), ["BASE", "DEBUG", "VERSION"]);
/// ```
pub fn declared_args(dockerfile: &str) -> BTreeSet<String> {
    let text = dockerfile.strip_prefix('\u{feff}').unwrap_or(dockerfile);
    let lines: Vec<&str> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    let escape = escape_directive(&lines);

    let mut declared = BTreeSet::new();
    let mut i = 0;
    while i < lines.len() {
        let first = lines[i].trim_start();
        i += 1;
        if first.starts_with('#') {
            continue;
        }
        let (head, mut complete) = trim_continuation(first, escape);
        if complete && head.trim().is_empty() {
            continue;
        }
        let mut instruction = head.to_string();
        while !complete && i < lines.len() {
            let next = lines[i];
            i += 1;
            let trimmed = next.trim_start();
            // BuildKit skips comment lines and empty lines inside a continued instruction.
            if trimmed.starts_with('#') || trimmed.is_empty() {
                continue;
            }
            let (part, done) = trim_continuation(next, escape);
            instruction.push_str(part);
            complete = done;
        }

        let (keyword, rest) = split_first_word(instruction.trim());
        if keyword.eq_ignore_ascii_case("ARG") {
            for word in split_words(rest, escape) {
                let name = word.split('=').next().unwrap_or_default();
                if is_valid_name(name) {
                    declared.insert(name.to_string());
                }
            }
        }
        if can_contain_heredoc(keyword, rest) && instruction.contains("<<") {
            for heredoc in heredocs(&instruction) {
                while i < lines.len() {
                    let line = lines[i];
                    i += 1;
                    let candidate = if heredoc.chomp {
                        line.trim_start_matches('\t')
                    } else {
                        line
                    };
                    if candidate == heredoc.name {
                        break;
                    }
                }
            }
        }
    }
    declared
}

/// The build arguments to pass for `declared` names, taken from `env` (for example
/// `std::env::vars()` mapped to `&str`, or a deployer's own map).
///
/// Variables the Dockerfile does not declare are left out, so they neither reach the build nor
/// change its key. When a name occurs several times in `env`, the last value wins.
pub(crate) fn build_args_from_env<'a>(
    declared: &BTreeSet<String>,
    env: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> BTreeMap<String, String> {
    env.into_iter()
        .filter(|(name, _)| declared.contains(*name))
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

/// True for a name Docker substitutes as `$NAME`: `[A-Za-z_][A-Za-z0-9_]*`.
fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The escape character set by an `escape` parser directive, `\` by default.
///
/// Directives are `# key=value` lines at the very top of the file; the first line that is not
/// a known directive (a blank line, an instruction, any other comment) ends them.
fn escape_directive(lines: &[&str]) -> char {
    let mut escape = None;
    for line in lines {
        let Some((key, value)) = parse_directive(line.trim_start()) else {
            break;
        };
        match key.to_ascii_lowercase().as_str() {
            "escape" => {
                // Docker rejects other values and a second escape directive; the scan keeps
                // the first valid one instead of failing.
                if escape.is_none() && (value == "\\" || value == "`") {
                    escape = value.chars().next();
                }
            }
            "syntax" | "check" => {}
            _ => break,
        }
    }
    escape.unwrap_or('\\')
}

/// Splits `#\s*key\s*=\s*value\s*` into key and value, as BuildKit's directive pattern does.
fn parse_directive(line: &str) -> Option<(&str, &str)> {
    let rest = line.strip_prefix('#')?.trim_start();
    let key_len = rest
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())))
        .map_or(rest.len(), |(i, _)| i);
    if key_len == 0 {
        return None;
    }
    let (key, rest) = rest.split_at(key_len);
    let value = rest.trim_start().strip_prefix('=')?.trim();
    if value.is_empty() {
        return None;
    }
    Some((key, value))
}

/// Removes a trailing escape character (followed by blanks only) that continues the line.
/// Returns the remaining text and whether the instruction ends on this line.
fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let trimmed = line.trim_end_matches([' ', '\t']);
    match trimmed.strip_suffix(escape) {
        Some(head) => (head, false),
        None => (line, true),
    }
}

/// Splits an instruction into its keyword and the rest.
fn split_first_word(s: &str) -> (&str, &str) {
    match s.find(char::is_whitespace) {
        Some(at) => (&s[..at], s[at..].trim_start()),
        None => (s, ""),
    }
}

/// Splits instruction arguments into words at blanks outside quotes, keeping quotes and
/// escapes in the words (BuildKit's `parseWords`).
fn split_words(rest: &str, escape: char) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    // A quoted empty string ("") is still a word.
    let mut blank_ok = false;
    let mut quote: Option<char> = None;
    let mut chars = rest.chars();
    while let Some(ch) = chars.next() {
        if let Some(q) = quote {
            if ch == q {
                quote = None;
                word.push(ch);
            } else if ch == escape && q != '\'' {
                word.push(ch);
                if let Some(next) = chars.next() {
                    word.push(next);
                }
            } else {
                word.push(ch);
            }
            continue;
        }
        if ch.is_whitespace() {
            if in_word && (blank_ok || !word.is_empty()) {
                words.push(std::mem::take(&mut word));
            }
            in_word = false;
            blank_ok = false;
            continue;
        }
        in_word = true;
        if ch == '\'' || ch == '"' {
            quote = Some(ch);
            blank_ok = true;
            word.push(ch);
        } else if ch == escape {
            // An escape at the very end is dropped; otherwise it and the next character stay.
            if let Some(next) = chars.next() {
                word.push(ch);
                word.push(next);
            }
        } else {
            word.push(ch);
        }
    }
    if in_word && (blank_ok || !word.is_empty()) {
        words.push(word);
    }
    words
}

/// True when BuildKit looks for heredocs in this instruction: `RUN`, `COPY` and `ADD` (also
/// behind `ONBUILD`), in shell form (the JSON form holds no heredocs).
fn can_contain_heredoc(keyword: &str, rest: &str) -> bool {
    let (keyword, rest) = if keyword.eq_ignore_ascii_case("ONBUILD") {
        split_first_word(rest)
    } else {
        (keyword, rest)
    };
    let heredoc_keyword = ["RUN", "COPY", "ADD"]
        .iter()
        .any(|k| keyword.eq_ignore_ascii_case(k));
    heredoc_keyword && serde_json::from_str::<Vec<String>>(rest.trim()).is_err()
}

/// One heredoc opened by an instruction.
struct Heredoc {
    /// The terminator line.
    name: String,
    /// `<<-`: leading tabs are stripped before comparing a line with the terminator.
    chomp: bool,
}

/// The heredocs an instruction opens, in order: every word of the form `[fd]<<[-]NAME`
/// where `NAME` (possibly quoted) holds no `<`.
fn heredocs(instruction: &str) -> Vec<Heredoc> {
    split_words(instruction, '\\')
        .iter()
        .filter_map(|word| {
            let rest = word.trim_start_matches(|c: char| c.is_ascii_digit());
            let rest = rest.strip_prefix("<<")?;
            let (chomp, rest) = match rest.strip_prefix('-') {
                Some(r) => (true, r),
                None => (false, rest),
            };
            if rest.contains('<') {
                return None;
            }
            let name = unquote(rest)?;
            (!name.is_empty()).then_some(Heredoc { name, chomp })
        })
        .collect()
}

/// Removes shell quoting from a heredoc name (`"EOF"`, `'EOF'`, `E\OF`); `None` when a quote
/// is left open.
fn unquote(word: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = word.chars();
    while let Some(ch) = chars.next() {
        match ch {
            '\'' => loop {
                match chars.next()? {
                    '\'' => break,
                    c => out.push(c),
                }
            },
            '"' => loop {
                match chars.next()? {
                    '"' => break,
                    '\\' => out.push(chars.next()?),
                    c => out.push(c),
                }
            },
            '\\' => out.push(chars.next()?),
            c => out.push(c),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn names(dockerfile: &str) -> Vec<String> {
        declared_args(dockerfile).into_iter().collect()
    }

    #[test]
    fn args_in_every_stage_and_before_the_first_from() {
        let df = "ARG BASE=debian:12\nFROM $BASE AS build\nARG VERSION\nRUN make\n\
                  FROM scratch\nARG RUNTIME=1\nCOPY --from=build /out /\n";
        assert_eq!(names(df), ["BASE", "RUNTIME", "VERSION"]);
    }

    #[test]
    fn one_instruction_declares_several_names() {
        assert_eq!(names("ARG A=1 B\n"), ["A", "B"]);
        assert_eq!(names("ARG A=1\tB=2   C\n"), ["A", "B", "C"]);
    }

    #[test]
    fn quoted_values_may_hold_blanks() {
        assert_eq!(names("ARG A=\"x y\" C='z'\n"), ["A", "C"]);
        assert_eq!(
            names("ARG A=\"x ARG=1 y\" B='p q r' D=\"\"\n"),
            ["A", "B", "D"]
        );
        assert_eq!(names("ARG A=\"say \\\"hi there\\\"\" B\n"), ["A", "B"]);
        // Single quotes do not honour the escape character.
        assert_eq!(names("ARG A='x\\' B\n"), ["A", "B"]);
    }

    #[test]
    fn keywords_are_case_insensitive_and_may_be_indented() {
        assert_eq!(names("arg a\nArg B\n  \tARG C\n"), ["B", "C", "a"]);
    }

    #[test]
    fn backslash_continues_a_line() {
        assert_eq!(
            names("ARG A=1 \\\n    B=2 \\\n    C\nARG D\n"),
            ["A", "B", "C", "D"]
        );
        // Blanks after the backslash still continue the line.
        assert_eq!(names("ARG A \\  \t\n B\n"), ["A", "B"]);
        // The continuation joins the text as is: no blank is inserted.
        assert_eq!(names("ARG AB\\\nC\n"), ["ABC"]);
        // A lone backslash line continues too.
        assert_eq!(names("\\\nARG A\n"), ["A"]);
    }

    #[test]
    fn escape_directive_changes_the_continuation_character() {
        let df = "# escape=`\nFROM mcr.microsoft.com/windows\nARG DIR=C:\\\nARG A=1 `\n    B\n";
        assert_eq!(names(df), ["A", "B", "DIR"]);
        // Directive syntax allows blanks and any key case, next to other directives.
        let df = "# syntax=docker/dockerfile:1\n#  ESCAPE = `  \nARG A `\n B\n";
        assert_eq!(names(df), ["A", "B"]);
        // Without the directive, the backslash continues the line.
        assert_eq!(names("ARG DIR=C:\\\nARG A\n"), ["A", "DIR"]);
    }

    #[test]
    fn escape_directive_counts_only_at_the_top() {
        // After an instruction, a blank line or another comment, it is a plain comment.
        for df in [
            "FROM x\n# escape=`\nARG A=C:\\\nB\n",
            "\n# escape=`\nARG A=C:\\\nB\n",
            "# hello\n# escape=`\nARG A=C:\\\nB\n",
        ] {
            assert_eq!(names(df), ["A"], "{df:?}");
        }
        // A value Docker rejects is ignored.
        assert_eq!(names("# escape=x\nARG A \\\n B\n"), ["A", "B"]);
    }

    #[test]
    fn comment_lines_are_ignored() {
        let df = "# ARG HIDDEN\n   # ARG INDENTED\nARG SHOWN # trailing text is not a comment\n";
        assert_eq!(
            names(df),
            ["SHOWN", "a", "comment", "is", "not", "text", "trailing"]
        );
        assert_eq!(names("#ARG A\n\t#ARG B\n"), Vec::<String>::new());
        // A comment ending in a backslash does not continue.
        assert_eq!(names("# note \\\nARG A\n"), ["A"]);
    }

    #[test]
    fn comment_and_empty_lines_inside_a_continued_instruction_are_skipped() {
        let df = "ARG A \\\n# ARG HIDDEN \\\n  # X\n\n   \n    B\nARG C\n";
        assert_eq!(names(df), ["A", "B", "C"]);
    }

    #[test]
    fn heredoc_bodies_are_not_instructions() {
        let df = "FROM x\nRUN <<EOF\nARG HIDDEN\necho hi\nEOF\nARG AFTER\n";
        assert_eq!(names(df), ["AFTER"]);
        // `EOF` must be the whole line: an indented EOF does not end a plain heredoc.
        let df = "RUN <<EOF\n  EOF\nARG HIDDEN\nEOF\nARG AFTER\n";
        assert_eq!(names(df), ["AFTER"]);
    }

    #[test]
    fn chomped_heredoc_ends_at_a_tab_indented_terminator() {
        let df = "RUN <<-END\n\tARG HIDDEN\n\t\tEND\nARG AFTER\n";
        assert_eq!(names(df), ["AFTER"]);
    }

    #[test]
    fn quoted_heredoc_names() {
        for df in [
            "RUN <<\"EOF\"\nARG HIDDEN\nEOF\nARG AFTER\n",
            "RUN <<'EOF'\nARG HIDDEN\nEOF\nARG AFTER\n",
            "RUN <<-\"EOF\"\n\tARG HIDDEN\n\tEOF\nARG AFTER\n",
            "RUN cat 3<<EOF >file\nARG HIDDEN\nEOF\nARG AFTER\n",
            "copy <<EOF /etc/conf\nARG HIDDEN\nEOF\nARG AFTER\n",
            "ONBUILD RUN <<EOF\nARG HIDDEN\nEOF\nARG AFTER\n",
            "RUN \\\n  <<EOF\nARG HIDDEN\nEOF\nARG AFTER\n",
        ] {
            assert_eq!(names(df), ["AFTER"], "{df:?}");
        }
    }

    #[test]
    fn several_heredocs_on_one_line_end_in_order() {
        let df =
            "RUN <<A bash && <<B sh\nARG HIDDEN1\nB\nARG HIDDEN2\nA\nARG HIDDEN3\nB\nARG AFTER\n";
        assert_eq!(names(df), ["AFTER"]);
    }

    #[test]
    fn not_heredocs() {
        for df in [
            // JSON form.
            "RUN [\"sh\", \"-c\", \"cat <<EOF\"]\nARG SEEN\nEOF\n",
            // Instructions that do not take heredocs.
            "ENV X=<<EOF\nARG SEEN\nEOF\n",
            // `<<` inside a word.
            "RUN cat<<EOF\nARG SEEN\nEOF\n",
            // Here-strings and `<<` without a name.
            "RUN cat <<< x\nARG SEEN\n",
            "RUN echo <<\nARG SEEN\n",
        ] {
            assert_eq!(names(df), ["SEEN"], "{df:?}");
        }
    }

    #[test]
    fn unterminated_heredoc_hides_the_rest() {
        assert_eq!(names("ARG A\nRUN <<EOF\nARG B\n"), ["A"]);
    }

    #[test]
    fn invalid_names_are_skipped() {
        let df = "ARG 1A A-B =x \"Q\"=1 é OK_1 _x\nARG\nARG =\n";
        assert_eq!(names(df), ["OK_1", "_x"]);
    }

    #[test]
    fn onbuild_arg_belongs_to_a_later_build() {
        assert_eq!(names("ONBUILD ARG LATER\nARG NOW\n"), ["NOW"]);
    }

    #[test]
    fn crlf_line_endings_and_byte_order_mark() {
        let df =
            "\u{feff}# escape=`\r\nARG A `\r\n  B\r\nRUN <<EOF\r\nARG HIDDEN\r\nEOF\r\nARG C\r\n";
        assert_eq!(names(df), ["A", "B", "C"]);
    }

    #[test]
    fn build_args_from_env_keeps_declared_names_only() {
        let declared = declared_args("ARG A\nARG B=default\n");
        let env = [("A", "1"), ("PATH", "/bin"), ("B", "x"), ("A", "2")];
        let args = build_args_from_env(&declared, env);
        let expected: BTreeMap<String, String> = [("A", "2"), ("B", "x")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(args, expected);
        assert!(build_args_from_env(&declared, [("C", "1")]).is_empty());
    }

    /// Lines that exercise every branch of the scanner.
    fn dockerfile_line() -> impl Strategy<Value = String> {
        prop_oneof![
            "[Aa][Rr][Gg]( +[A-Za-z_=\"' 0-9-]{0,12}){0,3}( \\\\)?",
            Just("RUN <<EOF".to_string()),
            Just("RUN <<-\"EOF\" <<X".to_string()),
            Just("EOF".to_string()),
            Just("\tEOF".to_string()),
            Just("# escape=`".to_string()),
            Just("ARG A `".to_string()),
            Just("FROM scratch".to_string()),
            "[ \t]*#.{0,10}",
            "[ \t]*\\\\?",
            ".{0,20}",
        ]
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_text(text in any::<String>()) {
            let _ = declared_args(&text);
        }

        #[test]
        fn never_panics_on_dockerfile_like_text(lines in prop::collection::vec(dockerfile_line(), 0..20)) {
            let _ = declared_args(&lines.join("\n"));
        }

        #[test]
        fn a_trailing_comment_line_changes_nothing(
            lines in prop::collection::vec(dockerfile_line(), 0..20),
            indent in "[ \t]{0,3}",
            comment in "[^\n]{0,20}",
        ) {
            let text = lines.join("\n");
            let with_comment = format!("{text}\n{indent}#{comment}");
            prop_assert_eq!(declared_args(&text), declared_args(&with_comment));
        }
    }
}
