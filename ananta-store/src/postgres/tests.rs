use super::*;

#[test]
fn redact_hides_the_password_and_parameters() {
    assert_eq!(
        redact("postgres://me:secret@db:5432/board?sslmode=disable&password=x"),
        "postgres://me@db:5432/board"
    );
    assert_eq!(
        redact("postgres://postgres@127.0.0.1/test"),
        "postgres://postgres@127.0.0.1/test"
    );
    assert_eq!(redact("host=db password=x"), "(a connection string)");
}
