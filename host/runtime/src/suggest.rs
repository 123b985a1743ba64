//! "Did you mean": the known name nearest to a misspelt one, for errors and warnings that
//! name what was wrong (a plugin id in a config table, an event type in `?types=`).

/// The candidate closest to `name`, when one is close enough to be a likely misspelling
/// (Jaro-Winkler similarity of 0.8 or more, as cargo and clap suggest).
pub fn nearest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(name, c), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// `; did you mean `x`?` or nothing.
pub fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    nearest(name, candidates).map(|c| format!("; did you mean `{c}`?")).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_misspelt_name_gets_the_nearest_and_an_unrelated_one_nothing() {
        let ids = ["shell", "read", "write", "redact-secrets"];
        assert_eq!(nearest("shel", ids), Some("shell"));
        assert_eq!(nearest("redact-secret", ids), Some("redact-secrets"));
        assert_eq!(nearest("kubernetes", ids), None);
        assert_eq!(did_you_mean("wirte", ids), "; did you mean `write`?");
    }
}
