//! The agent suite's tasks: small, everyday jobs with a setup and an acceptance check.

/// One task of the suite.
#[derive(Debug, Clone, Copy)]
pub struct SuiteTask {
    /// Short id.
    pub id: &'static str,
    /// What the agent is asked.
    pub prompt: &'static str,
    /// Shell run in the empty task folder before the agent starts.
    pub setup: &'static str,
    /// The acceptance check (exit 0 = solved), run in the task folder.
    pub check: &'static str,
}

const fn task(
    id: &'static str,
    prompt: &'static str,
    setup: &'static str,
    check: &'static str,
) -> SuiteTask {
    SuiteTask {
        id,
        prompt,
        setup,
        check,
    }
}

/// Every task, the CI subset ([`CI_SUBSET`]) first.
pub const TASKS: [SuiteTask; 21] = [
    task(
        "hello-file",
        "Create a file hello.txt that contains the word hello.",
        "",
        "grep -qi hello hello.txt",
    ),
    task(
        "mkdir",
        "Create a directory named build.",
        "",
        "test -d build",
    ),
    task(
        "copy",
        "Copy the file a.txt to b.txt.",
        "echo data > a.txt",
        "cmp -s a.txt b.txt",
    ),
    task(
        "delete",
        "Delete the file junk.tmp.",
        "echo junk > junk.tmp",
        "test ! -e junk.tmp",
    ),
    task(
        "count-lines",
        "Write the number of lines in data.txt into count.txt.",
        "printf 'a\\nb\\nc\\n' > data.txt",
        "test \"$(tr -d ' \\n' < count.txt)\" = 3",
    ),
    task(
        "git-init",
        "Initialise a git repository in the current directory.",
        "",
        "test -d .git",
    ),
    task(
        "rename",
        "Rename the file old.txt to new.txt.",
        "echo x > old.txt",
        "test -f new.txt && test ! -e old.txt",
    ),
    task(
        "append",
        "Append a line with the word second to log.txt.",
        "echo first > log.txt",
        "test \"$(sed -n 2p log.txt)\" = second",
    ),
    task(
        "uppercase",
        "Write the text of in.txt in upper case into out.txt.",
        "echo 'hello world' > in.txt",
        "grep -q 'HELLO WORLD' out.txt",
    ),
    task(
        "sort",
        "Sort the lines of fruits.txt alphabetically into sorted.txt.",
        "printf 'pear\\napple\\nfig\\n' > fruits.txt",
        "printf 'apple\\nfig\\npear\\n' | cmp -s - sorted.txt",
    ),
    task(
        "replace",
        "In conf.ini, change the value red to blue.",
        "echo 'color=red' > conf.ini",
        "grep -qx 'color=blue' conf.ini",
    ),
    task(
        "json",
        "Create config.json holding a JSON object whose key name has the value ananta.",
        "",
        "python3 -c \"import json; assert json.load(open('config.json'))['name'] == 'ananta'\"",
    ),
    task(
        "grep-count",
        "Write the number of lines of app.log that contain ERROR into errors.txt.",
        "printf 'ERROR a\\nINFO b\\nERROR c\\n' > app.log",
        "test \"$(tr -d ' \\n' < errors.txt)\" = 2",
    ),
    task(
        "git-commit",
        "Commit readme.md to the git repository with the message add readme.",
        "git init -q . && git config user.email agent@example.org && git config user.name agent && echo hi > readme.md",
        "git log --format=%s | grep -q 'add readme'",
    ),
    task(
        "shell-script",
        "Create an executable shell script run.sh that prints hello.",
        "",
        "test -x run.sh && ./run.sh | grep -q hello",
    ),
    task(
        "python-script",
        "Create a Python script add.py that prints the sum of 2 and 3.",
        "",
        "python3 add.py | grep -qx 5",
    ),
    task(
        "build-c",
        "Compile main.c with cc into a program named main.",
        "printf 'int main(void) { return 0; }\\n' > main.c",
        "test -x main && ./main",
    ),
    task(
        "make",
        "Build the project with make.",
        "printf 'all:\\n\\techo built > out.txt\\n' > Makefile",
        "grep -q built out.txt",
    ),
    task(
        "word-count",
        "Write the number of words in words.txt into wc.txt.",
        "echo 'one two three four' > words.txt",
        "test \"$(tr -d ' \\n' < wc.txt)\" = 4",
    ),
    task(
        "csv-column",
        "Write the names from people.csv (its first column, without the header line) into names.txt, one per line.",
        "printf 'name,age\\nann,31\\nbob,42\\n' > people.csv",
        "printf 'ann\\nbob\\n' | cmp -s - names.txt",
    ),
    task(
        "tar",
        "Pack the docs directory into the archive docs.tar.gz.",
        "mkdir docs && echo a > docs/a.txt",
        "tar tzf docs.tar.gz | grep -q 'docs/a.txt'",
    ),
];

/// How many of [`TASKS`] the CI run takes (the first ones).
pub const CI_SUBSET: usize = 6;
