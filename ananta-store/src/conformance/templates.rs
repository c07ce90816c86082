//! Cases: templates (CRUD, in use, unknown).

use super::helpers::*;
use super::*;

/// Template create/get/list/update/delete, unique names (also on rename), validation, and
/// `TemplateNotFound` for missing ones.
pub async fn templates_crud(store: DynStore) {
    let s = &*store;
    assert!(
        ok(s.list_templates().await, "list_templates").is_empty(),
        "a new store has no templates"
    );

    let mut new = NewTemplate::new("fix-bug", "Fix {{title}} in {{lang}}: {{description}}");
    new.description = "Bug fixing".to_string();
    new.provider = Some("ollama".to_string());
    new.defaults.insert("lang".to_string(), "Rust".to_string());
    let t1_in = new.into_template().unwrap();
    let t1 = ok(s.create_template(t1_in.clone()).await, "create_template");
    assert_same_template(&t1_in, &t1, "create_template returns the template");
    assert_same_template(
        &t1,
        &ok(s.get_template(t1.id).await, "get_template"),
        "get_template",
    );

    let same_name = NewTemplate::new("fix-bug", "Other {{title}}")
        .into_template()
        .unwrap();
    let e = err(s.create_template(same_name).await, "duplicate name");
    assert!(
        matches!(e, StoreError::AlreadyExists(_)),
        "duplicate name: got {e:?}"
    );
    let mut same_id = NewTemplate::new("another", "{{title}}")
        .into_template()
        .unwrap();
    same_id.id = t1.id;
    let e = err(s.create_template(same_id).await, "duplicate id");
    assert!(
        matches!(e, StoreError::AlreadyExists(_)),
        "duplicate id: got {e:?}"
    );
    let mut invalid = NewTemplate::new("broken", "{{title}}")
        .into_template()
        .unwrap();
    invalid.prompt_template = "Fix {{ oops".to_string();
    assert_invalid_input(
        err(s.create_template(invalid.clone()).await, "bad syntax"),
        "bad syntax",
    );
    assert_template_not_found(
        err(s.get_template(invalid.id).await, "bad"),
        invalid.id,
        "invalid is not stored",
    );

    let t2 = ok(
        s.create_template(
            NewTemplate::new("write-docs", "Document {{title}}")
                .into_template()
                .unwrap(),
        )
        .await,
        "create_template",
    );
    let listed = ok(s.list_templates().await, "list_templates");
    assert_eq!(
        listed.iter().map(|t| t.id).collect::<Vec<_>>(),
        vec![t1.id, t2.id],
        "oldest first"
    );

    let describe = TemplateUpdate {
        description: Some("Docs".to_string()),
        ..TemplateUpdate::default()
    };
    let t2 = ok(
        s.update_template(t2.id, describe).await,
        "update description",
    );
    assert_eq!(
        (t2.name.as_str(), t2.description.as_str()),
        ("write-docs", "Docs"),
        "updated fields"
    );
    assert_same_template(
        &t2,
        &ok(s.get_template(t2.id).await, "get"),
        "update is stored",
    );

    let rename = |n: &str| TemplateUpdate {
        name: Some(n.to_string()),
        ..TemplateUpdate::default()
    };
    let e = err(
        s.update_template(t2.id, rename("fix-bug")).await,
        "rename onto another name",
    );
    assert!(
        matches!(e, StoreError::AlreadyExists(_)),
        "rename clash: got {e:?}"
    );
    assert_same_template(
        &t2,
        &ok(s.get_template(t2.id).await, "get"),
        "a refused rename changes nothing",
    );
    let t2 = ok(
        s.update_template(t2.id, rename("write-docs")).await,
        "rename to its own name",
    );
    let t2 = ok(
        s.update_template(t2.id, rename("write-docs-v2")).await,
        "rename",
    );
    assert_eq!(t2.name, "write-docs-v2");
    let t3 = ok(
        s.create_template(
            NewTemplate::new("write-docs", "Docs for {{title}}")
                .into_template()
                .unwrap(),
        )
        .await,
        "the old name is free again",
    );

    let bad_text = TemplateUpdate {
        prompt_template: Some("{{nope}}".to_string()),
        ..TemplateUpdate::default()
    };
    assert_invalid_input(
        err(s.update_template(t2.id, bad_text).await, "unknown variable"),
        "unknown variable",
    );
    assert_same_template(
        &t2,
        &ok(s.get_template(t2.id).await, "get"),
        "an invalid update changes nothing",
    );

    let missing = TemplateId::new();
    assert_template_not_found(
        err(s.get_template(missing).await, "get"),
        missing,
        "get missing",
    );
    assert_template_not_found(
        err(s.update_template(missing, rename("x")).await, "update"),
        missing,
        "update missing",
    );
    assert_template_not_found(
        err(s.delete_template(missing).await, "delete"),
        missing,
        "delete missing",
    );

    ok(s.delete_template(t1.id).await, "delete_template");
    assert_template_not_found(
        err(s.get_template(t1.id).await, "get deleted"),
        t1.id,
        "get deleted",
    );
    let listed = ok(s.list_templates().await, "list_templates");
    assert_eq!(
        listed.iter().map(|t| t.id).collect::<Vec<_>>(),
        vec![t2.id, t3.id],
        "after delete"
    );
}

/// A template used by a task cannot be deleted (`InUse`) until no task refers to it.
pub async fn template_in_use(store: DynStore) {
    let s = &*store;
    let tpl = ok(
        s.create_template(
            NewTemplate::new("used", "Do {{title}}")
                .into_template()
                .unwrap(),
        )
        .await,
        "create_template",
    );
    let t1 = create(s, NewTask::new("one").template(tpl.id)).await;
    assert_eq!(t1.template_id, Some(tpl.id), "the task keeps its template");
    let t2 = create(s, NewTask::new("two")).await;
    update(
        s,
        t2.id,
        TaskUpdate {
            template_id: Some(Some(tpl.id)),
            ..TaskUpdate::default()
        },
    )
    .await;

    let e = err(
        s.delete_template(tpl.id).await,
        "delete while used by two tasks",
    );
    assert!(
        matches!(e, StoreError::InUse(_)),
        "expected InUse, got {e:?}"
    );
    update(
        s,
        t2.id,
        TaskUpdate {
            template_id: Some(None),
            ..TaskUpdate::default()
        },
    )
    .await;
    let e = err(
        s.delete_template(tpl.id).await,
        "delete while used by one task",
    );
    assert!(
        matches!(e, StoreError::InUse(_)),
        "expected InUse, got {e:?}"
    );
    assert_same_template(
        &tpl,
        &ok(s.get_template(tpl.id).await, "get"),
        "a refused delete keeps it",
    );

    ok(s.delete_task(t1.id).await, "delete_task");
    ok(s.delete_template(tpl.id).await, "delete once unused");
    assert_template_not_found(err(s.get_template(tpl.id).await, "get"), tpl.id, "deleted");
}

/// A task cannot be created with, or updated to, a template that does not exist.
pub async fn unknown_template_rejected(store: DynStore) {
    let s = &*store;
    let missing = TemplateId::new();
    let task = NewTask::new("orphan")
        .template(missing)
        .into_task()
        .unwrap();
    assert_template_not_found(
        err(s.create_task(task.clone()).await, "create"),
        missing,
        "create",
    );
    assert_task_not_found(
        err(s.get_task(task.id).await, "get"),
        task.id,
        "a rejected task is not stored",
    );

    let plain = create(s, NewTask::new("plain")).await;
    let set = TaskUpdate {
        template_id: Some(Some(missing)),
        title: Some("changed".to_string()),
        ..TaskUpdate::default()
    };
    assert_template_not_found(
        err(s.update_task(plain.id, set, None).await, "update"),
        missing,
        "update",
    );
    assert_same_task(
        &plain,
        &get(s, plain.id).await,
        "a rejected update changes nothing",
    );
}
