//! What a sandboxed command sees: the default read roots, with `/etc` through an allow list,
//! and the Rust toolchain's homes.

use std::path::PathBuf;

/// Entries of `/etc` that everyday tools read and that hold no secrets: name service and
/// resolver files, the dynamic loader's cache, certificates, locale and time zone, terminal
/// and shell defaults, and the system-wide configuration of git, ssh, vim, pip, npm and wget.
///
/// Everything else in `/etc` stays invisible (an allow list keeps up with new secrets; a deny
/// list of names cannot). Add more with [`SandboxConfig::read_root`](super::SandboxConfig::read_root).
pub const ETC_READABLE: &[&str] = &[
    "alternatives",
    "bash.bashrc",
    "ca-certificates",
    "ca-certificates.conf",
    "crypto-policies",
    "debian_version",
    "environment",
    "gai.conf",
    "gitconfig",
    "group",
    "host.conf",
    "hostname",
    "hosts",
    "inputrc",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "locale.alias",
    "locale.conf",
    "locale.gen",
    "localtime",
    "lsb-release",
    "magic",
    "magic.mime",
    "mime.types",
    "netconfig",
    "networks",
    "npmrc",
    "nsswitch.conf",
    "os-release",
    "passwd",
    "pip.conf",
    "pki/tls/certs",
    "profile",
    "protocols",
    "python3",
    "resolv.conf",
    "services",
    "shells",
    "ssh/ssh_config",
    "ssh/ssh_config.d",
    "ssl/certs",
    "ssl/openssl.cnf",
    "terminfo",
    "timezone",
    "vim",
    "wgetrc",
];

/// The default read-and-execute roots: system binaries and libraries (`/usr`, `/bin`, `/sbin`,
/// `/lib*`, `/opt`), the package database (`/var/lib/dpkg`), the [`ETC_READABLE`] entries
/// of `/etc`, `/proc` (in the sandbox a fresh
/// one that shows only the run's own processes), `/dev/urandom` and `/dev/random`, and the
/// Rust toolchain (`$RUSTUP_HOME`, and the `bin`, `registry` and `git` directories of
/// `$CARGO_HOME`, not its credentials; `~/.rustup` and `~/.cargo` when the variables are not
/// set). Missing entries are skipped when the sandbox is built.
pub fn default_read_roots() -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = [
        "/usr",
        "/bin",
        "/sbin",
        "/lib",
        "/lib32",
        "/lib64",
        "/libx32",
        "/opt",
        "/proc",
        "/dev/urandom",
        "/dev/random",
        "/var/lib/dpkg",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    roots.extend(
        ETC_READABLE
            .iter()
            .map(|name| PathBuf::from("/etc").join(name)),
    );
    for (name, dir) in toolchain_homes() {
        if name == "RUSTUP_HOME" {
            roots.push(dir);
        } else {
            for sub in ["bin", "registry", "git"] {
                roots.push(dir.join(sub));
            }
        }
    }
    roots
}

/// The Rust toolchain's homes of the host: `RUSTUP_HOME` and `CARGO_HOME` when set, else
/// `~/.rustup` and `~/.cargo` when they exist. A sandboxed command gets a private `HOME`, so
/// the executor also passes these two variables to it: without them rustup's `cargo` and
/// `rustc` proxies would look for a toolchain in the private home and find none.
pub(crate) fn toolchain_homes() -> Vec<(&'static str, PathBuf)> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    [("RUSTUP_HOME", ".rustup"), ("CARGO_HOME", ".cargo")]
        .into_iter()
        .filter_map(|(name, default)| {
            let dir = std::env::var_os(name)
                .map(PathBuf::from)
                .or_else(|| home.as_ref().map(|h| h.join(default)))?;
            dir.is_dir().then_some((name, dir))
        })
        .collect()
}
