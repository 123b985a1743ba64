//! Reading a command line the way `/bin/sh` (POSIX sh) reads it, to check each simple
//! command it will run. What the reader accepts it reads as the shell does; what it cannot
//! read with certainty it refuses, naming the construct, rather than guess.
//!
//! Accepted: words with single quotes, double quotes and backslash escapes; `$NAME`,
//! `${NAME}` and the special parameters; comments (`#` at the start of a word, to the end of
//! the line); the separators `;`, `&`, `&&`, `||`, `|` and newlines; redirections (`>`,
//! `>>`, `>|`, `<`, `<>`, `>&`, `<&`, with an optional descriptor number, as in `2>&1`).
//!
//! Refused: command substitution (`$(…)`, backquotes) and arithmetic (`$((…))`), parameter
//! expansions with operators (`${x:-…}`), here-documents (`<<`), subshells and groups
//! (`(…)`, `{ …; }`), compound commands (`if`, `for`, `while`, `case`, …), and unterminated
//! quotes. Run such a line as separate commands, or grant a pattern that names a script.

/// Why a command line is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{construct} is not accepted in a command line ({hint})")]
pub struct Unreadable {
    /// The construct, e.g. "command substitution `$(…)`".
    pub construct: &'static str,
    /// What to do instead.
    pub hint: &'static str,
}

const SEPARATE: &str = "run the commands one by one, each matched against the grant";

fn refuse(construct: &'static str, hint: &'static str) -> Unreadable {
    Unreadable { construct, hint }
}

/// Words that start compound commands when they stand unquoted at a command's start.
const RESERVED: &[&str] =
    &["if", "then", "else", "elif", "fi", "do", "done", "case", "esac", "while", "until", "for", "{", "}", "function", "select", "[["];

/// The simple commands `line` runs, each as written (comments left out), in order.
pub fn simple_commands(line: &str) -> Result<Vec<String>, Unreadable> {
    let mut reader = Reader { chars: line.chars().collect(), at: 0, commands: Vec::new(), current: String::new(), word: Word::default() };
    reader.read()?;
    Ok(reader.commands)
}

/// The word being read: its text, whether any of it was quoted, and the words before it in
/// the current command.
#[derive(Default)]
struct Word {
    text: String,
    quoted: bool,
    index: usize,
    open: bool,
}

struct Reader {
    chars: Vec<char>,
    at: usize,
    commands: Vec<String>,
    current: String,
    word: Word,
}

impl Reader {
    fn peek(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.at + ahead).copied()
    }

    fn take(&mut self) -> Option<char> {
        let c = self.peek(0)?;
        self.at += 1;
        Some(c)
    }

    fn push(&mut self, c: char) {
        self.current.push(c);
        self.word.text.push(c);
        self.word.open = true;
    }

    fn read(&mut self) -> Result<(), Unreadable> {
        while let Some(c) = self.take() {
            match c {
                ' ' | '\t' => {
                    self.end_word()?;
                    self.current.push(c);
                }
                '\n' | ';' => {
                    if c == ';' && self.peek(0) == Some(';') {
                        return Err(refuse("`;;` (a `case` item)", SEPARATE));
                    }
                    self.end_command(false)?;
                }
                '&' if self.peek(0) == Some('&') => {
                    self.at += 1;
                    self.end_command(true)?;
                }
                '&' => self.end_command(false)?,
                '|' => {
                    if self.peek(0) == Some('|') {
                        self.at += 1;
                    }
                    self.end_command(true)?;
                }
                '(' | ')' => return Err(refuse("a subshell or group `( … )`", SEPARATE)),
                '`' => return Err(refuse("command substitution with backquotes", SEPARATE)),
                '#' if !self.word.open => self.skip_comment(),
                '\'' => self.single_quoted()?,
                '"' => self.double_quoted()?,
                '\\' => match self.take() {
                    // A line continuation: the shell removes both.
                    Some('\n') => {}
                    Some(next) => {
                        self.push('\\');
                        self.push(next);
                        self.word.quoted = true;
                    }
                    None => self.push('\\'),
                },
                '$' => self.dollar()?,
                '<' | '>' => self.redirection(c)?,
                _ => self.push(c),
            }
        }
        self.end_command(false)
    }

    /// A word ends: an unquoted reserved word at a command's start is a compound command.
    fn end_word(&mut self) -> Result<(), Unreadable> {
        if !self.word.open {
            return Ok(());
        }
        let word = std::mem::take(&mut self.word);
        if word.index == 0 && !word.quoted && RESERVED.contains(&word.text.as_str()) {
            return Err(refuse("a compound command (`if`, `for`, `while`, `case`, `{ … }`)", "grant a pattern that runs a script instead"));
        }
        self.word = Word { index: word.index + 1, ..Word::default() };
        Ok(())
    }

    /// A separator: the command so far is complete. After `&&`, `||` and `|` another
    /// command must follow.
    fn end_command(&mut self, needs_next: bool) -> Result<(), Unreadable> {
        self.end_word()?;
        let command = self.current.trim().to_string();
        self.current.clear();
        self.word = Word::default();
        if command.is_empty() {
            // An empty command before `;`, `&` or a newline runs nothing.
            if needs_next {
                return Err(refuse("an operator without a command before it", "write a command on each side of `&&`, `||` and `|`"));
            }
            return Ok(());
        }
        self.commands.push(command);
        if needs_next {
            // The next command must be there (the shell reads on past newlines).
            let rest: String = self.chars[self.at..].iter().collect();
            if rest.trim().is_empty() {
                return Err(refuse("an operator without a command after it", "write a command on each side of `&&`, `||` and `|`"));
            }
        }
        Ok(())
    }

    fn skip_comment(&mut self) {
        while let Some(c) = self.peek(0) {
            if c == '\n' {
                break;
            }
            self.at += 1;
        }
    }

    fn single_quoted(&mut self) -> Result<(), Unreadable> {
        self.push('\'');
        self.word.quoted = true;
        loop {
            match self.take() {
                Some('\'') => {
                    self.push('\'');
                    return Ok(());
                }
                Some(c) => self.push(c),
                None => return Err(refuse("an unterminated single quote", "close the quote")),
            }
        }
    }

    fn double_quoted(&mut self) -> Result<(), Unreadable> {
        self.push('"');
        self.word.quoted = true;
        loop {
            match self.take() {
                Some('"') => {
                    self.push('"');
                    return Ok(());
                }
                Some('\\') => {
                    self.push('\\');
                    if let Some(next) = self.take() {
                        self.push(next);
                    }
                }
                Some('`') => return Err(refuse("command substitution with backquotes", SEPARATE)),
                Some('$') => self.dollar()?,
                Some(c) => self.push(c),
                None => return Err(refuse("an unterminated double quote", "close the quote")),
            }
        }
    }

    /// `$` starts a parameter (accepted when plain), a substitution or arithmetic (refused),
    /// or is a plain character.
    fn dollar(&mut self) -> Result<(), Unreadable> {
        self.push('$');
        match self.peek(0) {
            Some('(') => Err(refuse("command substitution `$( … )` or arithmetic `$(( … ))`", SEPARATE)),
            Some('{') => {
                self.at += 1;
                self.push('{');
                let start = self.at;
                while self.peek(0).is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                    let c = self.take().expect("peeked");
                    self.push(c);
                }
                if self.at == start || self.peek(0) != Some('}') {
                    return Err(refuse("a parameter expansion with an operator (`${name:-…}` and the like)", "use `$NAME` or `${NAME}`"));
                }
                self.at += 1;
                self.push('}');
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// `<` or `>`, with the rest of the operator; a here-document is refused. The descriptor
    /// number before it (`2>`) is already part of the word, and is taken with it.
    fn redirection(&mut self, first: char) -> Result<(), Unreadable> {
        let next = self.peek(0);
        if first == '<' && next == Some('<') {
            return Err(refuse("a here-document `<<`", "write the input to a file and redirect it with `<`"));
        }
        // The descriptor number is not a word of the command: forget it as one.
        let fd_only = self.word.open && !self.word.quoted && self.word.text.chars().all(|c| c.is_ascii_digit());
        if self.word.open && !fd_only {
            self.end_word()?;
        }
        let index = self.word.index;
        self.current.push(first);
        if matches!((first, next), ('>', Some('>' | '|' | '&')) | ('<', Some('>' | '&'))) {
            self.current.push(next.expect("matched"));
            self.at += 1;
        }
        // The target follows; it is a file name (or a descriptor), not a command word, so
        // it keeps the word count where it was.
        self.word = Word { index: index.max(1), ..Word::default() };
        Ok(())
    }
}

/// The words of a simple command that [`simple_commands`] accepted, as the program will see
/// them: quotes removed, escapes resolved, redirections left out. Parameters stay as
/// written (`$HOME`), since their values are the command's environment.
pub fn words(command: &str) -> Vec<String> {
    let mut words = Vec::new();
    let (mut word, mut open, mut raw) = (String::new(), false, String::new());
    let mut chars = command.chars().peekable();
    let mut skip_target = false;
    let finish = |word: &mut String, open: &mut bool, raw: &mut String, words: &mut Vec<String>, skip_target: &mut bool| {
        if !*open {
            return;
        }
        let redirection = raw.trim_start_matches(|c: char| c.is_ascii_digit()).starts_with(['<', '>']);
        let bare_operator =
            redirection && raw.trim_start_matches(|c: char| c.is_ascii_digit()).trim_start_matches(['<', '>', '&', '|']).is_empty();
        if *skip_target {
            *skip_target = false;
        } else if redirection {
            *skip_target = bare_operator;
        } else {
            words.push(std::mem::take(word));
        }
        word.clear();
        raw.clear();
        *open = false;
    };
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => finish(&mut word, &mut open, &mut raw, &mut words, &mut skip_target),
            '\'' => {
                open = true;
                raw.push('"');
                for q in chars.by_ref() {
                    if q == '\'' {
                        break;
                    }
                    word.push(q);
                }
            }
            '"' => {
                open = true;
                raw.push('"');
                while let Some(q) = chars.next() {
                    match q {
                        '"' => break,
                        '\\' if chars.peek().is_some_and(|n| matches!(n, '$' | '`' | '"' | '\\')) => {
                            word.push(chars.next().expect("peeked"))
                        }
                        _ => word.push(q),
                    }
                }
            }
            '\\' => {
                open = true;
                raw.push('"');
                if let Some(next) = chars.next() {
                    word.push(next);
                }
            }
            '<' | '>' => {
                // A redirection operator starts here: it and its target are not words. A
                // descriptor number just before it belongs to it; any other word ends.
                if open && raw.chars().all(|r| r.is_ascii_digit()) {
                    word.clear();
                } else {
                    finish(&mut word, &mut open, &mut raw, &mut words, &mut skip_target);
                    raw.clear();
                }
                open = true;
                raw.push(c);
                while let Some(&n) = chars.peek() {
                    if matches!(n, '>' | '<' | '&' | '|') {
                        raw.push(n);
                        chars.next();
                    } else {
                        break;
                    }
                }
                let target_follows = chars.peek().is_some_and(|n| !n.is_whitespace());
                if target_follows {
                    // `>file`, `2>&1`: the target is glued to the operator.
                    while let Some(&n) = chars.peek() {
                        if n.is_whitespace() {
                            break;
                        }
                        chars.next();
                    }
                    raw.push('x');
                }
                finish(&mut word, &mut open, &mut raw, &mut words, &mut skip_target);
            }
            _ => {
                open = true;
                raw.push(c);
                word.push(c);
            }
        }
    }
    finish(&mut word, &mut open, &mut raw, &mut words, &mut skip_target);
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(line: &str) -> Vec<String> {
        simple_commands(line).unwrap_or_else(|e| panic!("`{line}`: {e}"))
    }

    fn refused(line: &str) -> String {
        match simple_commands(line) {
            Ok(commands) => panic!("`{line}` must be refused, got {commands:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn separators_split_commands_as_the_shell_does() {
        assert_eq!(split("ls -la"), ["ls -la"]);
        assert_eq!(split("ls; rm -rf ~"), ["ls", "rm -rf ~"]);
        assert_eq!(split("a && b || c | d & e"), ["a", "b", "c", "d", "e"]);
        assert_eq!(split("a\nb\n"), ["a", "b"]);
        assert_eq!(split("sleep 1 &"), ["sleep 1"]);
        assert_eq!(split("a &&\n b"), ["a", "b"]);
    }

    #[test]
    fn quotes_and_escapes_keep_separators_inside_words() {
        assert_eq!(split("echo 'a; b' \"c | d\""), ["echo 'a; b' \"c | d\""]);
        assert_eq!(split("echo a\\;b"), ["echo a\\;b"]);
        assert_eq!(split("echo \"it's\" 'say \"hi\"'"), ["echo \"it's\" 'say \"hi\"'"]);
        // A backslash is literal inside single quotes: the quote ends after it.
        assert_eq!(split("echo 'a\\'; id"), ["echo 'a\\'", "id"]);
        assert_eq!(split("echo \"a\\\"; id\""), ["echo \"a\\\"; id\""]);
        // A line continuation joins the lines.
        assert_eq!(split("echo a \\\nb"), ["echo a b"]);
    }

    #[test]
    fn comments_run_nothing_and_hide_nothing() {
        assert_eq!(split("echo hi # ; rm -rf /"), ["echo hi"]);
        // A quote inside a comment does not open: the next line is a command of its own.
        assert_eq!(split("echo a #'\nid #'"), ["echo a", "id"]);
        // `#` inside a word is not a comment.
        assert_eq!(split("echo a#b; id"), ["echo a#b", "id"]);
        assert_eq!(split("# only a comment"), Vec::<String>::new());
    }

    #[test]
    fn redirections_are_part_of_their_command() {
        assert_eq!(split("cargo test 2>&1"), ["cargo test 2>&1"]);
        assert_eq!(split("cargo test 2>&1 | tail -n 5"), ["cargo test 2>&1", "tail -n 5"]);
        assert_eq!(split("ls > out.txt; cat < out.txt >> all.txt"), ["ls > out.txt", "cat < out.txt >> all.txt"]);
        assert_eq!(split("echo x >&2"), ["echo x >&2"]);
        assert_eq!(split("echo x 1>|f"), ["echo x 1>|f"]);
    }

    #[test]
    fn plain_parameters_are_accepted() {
        assert_eq!(split("echo $HOME ${PATH} $1 $? $$"), ["echo $HOME ${PATH} $1 $? $$"]);
        assert_eq!(split("echo \"$HOME\"; echo costs $"), ["echo \"$HOME\"", "echo costs $"]);
    }

    #[test]
    fn what_cannot_be_read_with_certainty_is_refused() {
        assert!(refused("echo $(id)").contains("command substitution"));
        assert!(refused("echo \"$(id)\"").contains("command substitution"));
        assert!(refused("echo `id`").contains("backquotes"));
        assert!(refused("echo \"`id`\"").contains("backquotes"));
        assert!(refused("echo $((1+1))").contains("arithmetic"));
        assert!(refused("echo ${x:-$(id)}").contains("parameter expansion"));
        assert!(refused("echo ${x;id}").contains("parameter expansion"));
        assert!(refused("cat <<EOF\nx\nEOF").contains("here-document"));
        assert!(refused("(id)").contains("subshell"));
        assert!(refused("echo a; { id; }").contains("compound"));
        assert!(refused("if true; then id; fi").contains("compound"));
        assert!(refused("for x in a; do id; done").contains("compound"));
        assert!(refused("while true; do id; done").contains("compound"));
        assert!(refused("case x in x) id;; esac").contains("subshell") || refused("case x in x) id;; esac").contains("compound"));
        assert!(refused("echo 'open").contains("unterminated"));
        assert!(refused("echo \"open").contains("unterminated"));
        assert!(refused("ls &&").contains("after it"));
        assert!(refused("| ls").contains("before it"));
    }

    #[test]
    fn words_are_what_the_program_sees() {
        assert_eq!(words("git 'log' \"--format=%h %s\" a\\ b"), ["git", "log", "--format=%h %s", "a b"]);
        assert_eq!(words("cargo test 2>&1 > out.txt"), ["cargo", "test"]);
        assert_eq!(words("cat < in.txt -n"), ["cat", "-n"]);
        assert_eq!(words("echo a>b 2>/dev/null"), ["echo", "a"]);
    }

    #[test]
    fn reserved_words_count_only_unquoted_at_a_commands_start() {
        assert_eq!(split("echo if then fi"), ["echo if then fi"]);
        assert_eq!(split("'if' x"), ["'if' x"]);
        assert_eq!(split("echo done; ls"), ["echo done", "ls"]);
    }
}
