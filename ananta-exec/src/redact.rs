//! Keeping the values of secret-looking environment variables out of command output, and so
//! out of logs, task history and what is fed back to a model.

use std::borrow::Cow;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

/// Parts of a variable name that mark its value as a secret (matched case-insensitively).
const SECRET_NAME_PARTS: &[&str] = &[
    "KEY",
    "TOKEN",
    "SECRET",
    "PASSWORD",
    "PASSWD",
    "PASSPHRASE",
    "CREDENTIAL",
    "AUTH",
    "PRIVATE",
    "COOKIE",
    "SESSION",
    "DATABASE_URL",
];

/// Values shorter than this are not redacted: replacing every `1` or `true` in the output
/// would hide more than it protects.
pub const MIN_SECRET_LEN: usize = 6;

/// Whether a variable of this name holds a secret by its look (`OPENAI_API_KEY`,
/// `GITHUB_TOKEN`, `PGPASSWORD`, `AWS_SECRET_ACCESS_KEY`, `DATABASE_URL`…).
///
/// ```
/// use ananta_exec::redact::is_secret_name;
/// assert!(is_secret_name("OPENAI_API_KEY"));
/// assert!(is_secret_name("github_token"));
/// assert!(!is_secret_name("PATH"));
/// ```
pub fn is_secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    SECRET_NAME_PARTS.iter().any(|part| upper.contains(part))
}

/// Replaces the values of secret-looking variables with `[redacted NAME]`.
///
/// Built from the variables a command sees and those of the host process, so that a command
/// printing its environment (`env`, `cat /proc/self/environ`), or echoing a key it was given,
/// shows no secret.
///
/// ```
/// use ananta_exec::redact::Redactor;
/// let r = Redactor::from_vars([("API_TOKEN", "s3cr3t-value"), ("PATH", "/usr/bin")]);
/// assert_eq!(r.redact("token=s3cr3t-value path=/usr/bin"), "token=[redacted API_TOKEN] path=/usr/bin");
/// ```
#[derive(Clone, Default)]
pub struct Redactor {
    /// (name, value), longest value first so that a value containing another is replaced whole.
    secrets: Vec<(String, Vec<u8>)>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only: the values are what this type hides.
        f.debug_struct("Redactor")
            .field(
                "names",
                &self.secrets.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Redactor {
    /// A redactor for the secret-looking variables among `vars`.
    pub fn from_vars<I, K, V>(vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        let mut secrets: Vec<(String, Vec<u8>)> = vars
            .into_iter()
            .filter_map(|(k, v)| {
                let name = k.as_ref().to_string_lossy().into_owned();
                let value = v.as_ref().as_bytes().to_vec();
                (is_secret_name(&name) && value.len() >= MIN_SECRET_LEN).then_some((name, value))
            })
            .collect();
        secrets.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then_with(|| a.0.cmp(&b.0)));
        secrets.dedup_by(|a, b| a.1 == b.1);
        Self { secrets }
    }

    /// A redactor for the secret-looking variables of this process and of `extra` (e.g. the
    /// environment a command is given).
    pub fn for_process_and<'a, I>(extra: I) -> Self
    where
        I: IntoIterator<Item = (&'a OsString, &'a OsString)>,
    {
        let mut vars: Vec<(OsString, OsString)> = std::env::vars_os().collect();
        vars.extend(extra.into_iter().map(|(k, v)| (k.clone(), v.clone())));
        Self::from_vars(vars)
    }

    /// Whether there is nothing to redact.
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// `bytes` with every secret value replaced.
    pub fn redact_bytes<'b>(&self, bytes: &'b [u8]) -> Cow<'b, [u8]> {
        let mut out: Cow<'b, [u8]> = Cow::Borrowed(bytes);
        for (name, value) in &self.secrets {
            if let Some(replaced) =
                replace_all(&out, value, format!("[redacted {name}]").as_bytes())
            {
                out = Cow::Owned(replaced);
            }
        }
        out
    }

    /// `text` with every secret value replaced.
    pub fn redact<'t>(&self, text: &'t str) -> Cow<'t, str> {
        match self.redact_bytes(text.as_bytes()) {
            Cow::Borrowed(_) => Cow::Borrowed(text),
            // Values and markers are whole byte strings of valid text replaced in valid text,
            // except a value that is not UTF-8, which cannot occur in a `str` anyway.
            Cow::Owned(bytes) => Cow::Owned(String::from_utf8_lossy(&bytes).into_owned()),
        }
    }
}

/// `haystack` with every `needle` replaced by `with`; `None` when there is none.
fn replace_all(haystack: &[u8], needle: &[u8], with: &[u8]) -> Option<Vec<u8>> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    let mut out = Vec::new();
    let mut last = 0;
    let mut i = 0;
    let mut found = false;
    while i + needle.len() <= haystack.len() {
        if &haystack[i..i + needle.len()] == needle {
            out.extend_from_slice(&haystack[last..i]);
            out.extend_from_slice(with);
            i += needle.len();
            last = i;
            found = true;
        } else {
            i += 1;
        }
    }
    if !found {
        return None;
    }
    out.extend_from_slice(&haystack[last..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_value_first_and_every_occurrence() {
        let r = Redactor::from_vars([
            ("A_KEY", "abcdef"),
            ("B_KEY", "abcdefgh"),
            ("SHORT_KEY", "ab"),
        ]);
        assert_eq!(
            r.redact("abcdefgh abcdef ab abcdef"),
            "[redacted B_KEY] [redacted A_KEY] ab [redacted A_KEY]"
        );
        assert!(matches!(r.redact("nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn debug_shows_names_not_values() {
        let r = Redactor::from_vars([("MY_PASSWORD", "hunter2-but-longer")]);
        let shown = format!("{r:?}");
        assert!(shown.contains("MY_PASSWORD") && !shown.contains("hunter2"));
    }
}
