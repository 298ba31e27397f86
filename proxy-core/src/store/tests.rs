use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::*;

fn user(id: &str, name: &str) -> User {
    User {
        id: id.into(),
        username: name.into(),
        display_name: String::new(),
        enabled: true,
        must_change_password: false,
        principal_ids: vec![format!("local://{id}")],
        created_at: Timestamp(1_700_000_000),
    }
}

fn project(id: &str, payload: usize) -> Object {
    Object::Project(Project {
        id: id.into(),
        cluster_id: "c-1".into(),
        display_name: "x".repeat(payload),
        namespaces: vec!["default".into()],
    })
}

fn open(path: &Path) -> EmbeddedStore {
    EmbeddedStore::open(path, EmbeddedOptions::default()).expect("open store")
}

fn file_hash(path: &Path) -> Vec<u8> {
    Sha256::digest(std::fs::read(path).expect("read file")).to_vec()
}

#[test]
fn key_roundtrip() {
    let k = Key::new(Kind::Token, "t-abc/def");
    assert_eq!(Key::decode(&k.encode()), Some(k));
    assert_eq!(Key::decode("nope/x"), None);
}

#[test]
fn commit_load_and_revisions() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("s.redb"));
    assert_eq!(store.revision().unwrap(), Revision(0));
    let r1 = store
        .commit(vec![Op::put(
            Object::User(user("u-1", "alice")),
            Expect::Absent,
        )])
        .unwrap();
    assert_eq!(r1, Revision(1));
    let r2 = store
        .commit(vec![Op::put(project("p-1", 1), Expect::Any)])
        .unwrap();
    assert_eq!(r2, Revision(2));
    let loaded = store.load().unwrap();
    assert_eq!(loaded.revision, Revision(2));
    assert_eq!(loaded.objects.len(), 2);
    let snap = Snapshot::from_loaded(loaded);
    assert_eq!(snap.user("u-1").unwrap().revision, Revision(1));
    assert_eq!(snap.project("p-1").unwrap().revision, Revision(2));
}

#[test]
fn preconditions_abort_the_whole_commit() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("s.redb"));
    store
        .commit(vec![Op::put(
            Object::User(user("u-1", "alice")),
            Expect::Absent,
        )])
        .unwrap();
    // Second op conflicts: the first must not be applied either.
    let err = store
        .commit(vec![
            Op::put(project("p-1", 1), Expect::Absent),
            Op::put(Object::User(user("u-1", "alice2")), Expect::Absent),
        ])
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
    let snap = Snapshot::from_loaded(store.load().unwrap());
    assert!(snap.project("p-1").is_none());
    assert_eq!(store.revision().unwrap(), Revision(1));

    // Optimistic concurrency on the modification revision.
    let stale = Expect::Revision(Revision(0));
    let err = store
        .commit(vec![Op::put(Object::User(user("u-1", "x")), stale)])
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }));
    store
        .commit(vec![Op::put(
            Object::User(user("u-1", "alice3")),
            Expect::Revision(Revision(1)),
        )])
        .unwrap();
    let err = store
        .commit(vec![Op::delete(
            Key::new(Kind::Project, "p-9"),
            Expect::Exists,
        )])
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }));
    store
        .commit(vec![Op::delete(
            Key::new(Kind::User, "u-1"),
            Expect::Exists,
        )])
        .unwrap();
    assert!(Snapshot::from_loaded(store.load().unwrap())
        .user("u-1")
        .is_none());
}

#[test]
fn change_feed_folds_and_reports_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("s.redb"));
    store
        .commit(vec![Op::put(project("p-1", 1), Expect::Any)])
        .unwrap();
    store
        .commit(vec![Op::put(project("p-2", 1), Expect::Any)])
        .unwrap();
    store
        .commit(vec![Op::put(project("p-1", 2), Expect::Any)])
        .unwrap();
    store
        .commit(vec![Op::delete(
            Key::new(Kind::Project, "p-2"),
            Expect::Any,
        )])
        .unwrap();
    let Changes::Events { revision, events } = store.changes_since(Revision(1)).unwrap() else {
        panic!("compacted")
    };
    assert_eq!(revision, Revision(4));
    assert_eq!(events.len(), 2);
    let p1 = events.iter().find(|e| e.key.id == "p-1").unwrap();
    assert_eq!(p1.value.as_ref().unwrap().revision, Revision(3));
    let p2 = events.iter().find(|e| e.key.id == "p-2").unwrap();
    assert!(p2.value.is_none());
    // Nothing new.
    assert_eq!(
        store.changes_since(Revision(4)).unwrap(),
        Changes::Events {
            revision: Revision(4),
            events: vec![]
        }
    );
    // A reader claiming to be ahead (e.g. the file was restored from a backup)
    // must reload.
    assert_eq!(
        store.changes_since(Revision(99)).unwrap(),
        Changes::Compacted
    );
}

#[test]
fn view_sees_own_commits_immediately_and_others_after_refresh() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let server = StoreView::new(Arc::new(open(&path))).unwrap();
    // A second handle on the same file: what a CLI process does.
    let cli = open(&path);

    server
        .commit(vec![Op::put(
            Object::User(user("u-1", "alice")),
            Expect::Absent,
        )])
        .unwrap();
    assert!(server.snapshot().user("u-1").is_some());

    let old = server.snapshot();
    cli.commit(vec![Op::put(
        Object::User(user("u-2", "bob")),
        Expect::Absent,
    )])
    .unwrap();
    assert!(server.snapshot().user("u-2").is_none());
    assert!(server.refresh().unwrap());
    assert!(server.snapshot().user("u-2").is_some());
    // Old snapshots are immutable.
    assert!(old.user("u-2").is_none());
    assert!(!server.refresh().unwrap());
}

#[tokio::test]
async fn poller_observes_another_handles_write_within_a_bounded_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let server = StoreView::new(Arc::new(open(&path))).unwrap();
    let _poller = server.spawn_poller(Duration::from_millis(50));
    let cli = open(&path);
    cli.commit(vec![Op::put(project("p-cli", 1), Expect::Absent)])
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.snapshot().project("p-cli").is_none() {
        assert!(
            Instant::now() < deadline,
            "server never saw the CLI's write"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[test]
fn exclusive_sharing_refuses_a_second_process_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let _server = EmbeddedStore::open(
        &path,
        EmbeddedOptions::default().sharing(Sharing::Exclusive),
    )
    .unwrap();
    let err = EmbeddedStore::open(
        &path,
        EmbeddedOptions::default().sharing(Sharing::Exclusive),
    )
    .unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err}");
    assert!(err.to_string().contains("admin API"), "{err}");
}

#[test]
fn garbage_file_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let garbage: Vec<u8> = (0..64 * 1024u32).map(|i| (i * 7 + 13) as u8).collect();
    std::fs::write(&path, &garbage).unwrap();
    let before = file_hash(&path);
    let err = EmbeddedStore::open(&path, EmbeddedOptions::default()).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("untouched"), "{err}");
    assert_eq!(file_hash(&path), before);
}

#[test]
fn an_empty_file_is_refused_not_recreated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    std::fs::write(&path, b"").unwrap();
    let err = EmbeddedStore::open(&path, EmbeddedOptions::default()).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("empty"), "{err}");
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        0,
        "the file was written"
    );
}

#[test]
fn a_new_store_is_created_whole_and_leaves_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    drop(open(&path));
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["s.redb"]);
    drop(open(&path));
}

/// Garbage written over any one page of a real store, as a disk fault would:
/// never a panic; either refused as corrupt with the file untouched, or (an
/// unused page) opened with every object intact.
#[test]
fn damaged_store_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let pristine = dir.path().join("pristine.redb");
    {
        let store = open(&pristine);
        for i in 0..20 {
            store
                .commit(vec![Op::put(project(&format!("p-{i}"), 300), Expect::Any)])
                .unwrap();
        }
    }
    let pristine = std::fs::read(&pristine).unwrap();
    let garbage: Vec<u8> = (0..512u32).map(|i| (i * 37 + 11) as u8).collect();
    let mut refused = 0;
    for offset in (4096..pristine.len()).step_by(4096) {
        let path = dir.path().join(format!("damaged-{offset}.redb"));
        let mut bytes = pristine.clone();
        bytes[offset..offset + garbage.len()].copy_from_slice(&garbage);
        std::fs::write(&path, &bytes).unwrap();
        let opened = std::panic::catch_unwind(|| {
            EmbeddedStore::open(&path, EmbeddedOptions::default()).map(drop)
        })
        .unwrap_or_else(|_| panic!("opening a store damaged at {offset} panicked"));
        match opened {
            Ok(()) => {
                let loaded = open(&path).load().expect("an opened store loads");
                assert_eq!(loaded.objects.len(), 20, "damaged at {offset}");
            }
            Err(err) => {
                assert!(
                    matches!(err, StoreError::Corrupt { .. }),
                    "damaged at {offset}: {err}"
                );
                assert!(
                    std::fs::read(&path).unwrap() == bytes,
                    "damaged at {offset}: the file was written"
                );
                refused += 1;
            }
        }
    }
    assert!(
        refused > 0,
        "no damaged page was noticed: the test damages nothing"
    );
}

#[test]
fn newer_schema_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    drop(open(&path));
    {
        // What a future Paddock would leave behind.
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut meta = txn
                .open_table(redb::TableDefinition::<&str, u64>::new("meta"))
                .unwrap();
            meta.insert("schema_version", SCHEMA_VERSION + 1).unwrap();
        }
        txn.commit().unwrap();
    }
    let before = file_hash(&path);
    let err = EmbeddedStore::open(&path, EmbeddedOptions::default()).unwrap_err();
    match &err {
        StoreError::NewerVersion { found, .. } => assert_eq!(found, "2"),
        other => panic!("expected NewerVersion, got {other}"),
    }
    assert!(err.to_string().contains("newer version of Paddock"));
    assert_eq!(file_hash(&path), before);
}

#[test]
fn foreign_redb_file_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(redb::TableDefinition::<u64, u64>::new("other"))
            .unwrap()
            .insert(1, 1)
            .unwrap();
        txn.commit().unwrap();
    }
    let before = file_hash(&path);
    let err = EmbeddedStore::open(&path, EmbeddedOptions::default()).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    assert_eq!(file_hash(&path), before);
}

#[test]
fn reopening_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    {
        let s = open(&path);
        s.commit(vec![Op::put(project("p-1", 10), Expect::Absent)])
            .unwrap();
    }
    let s = open(&path);
    assert_eq!(s.revision().unwrap(), Revision(1));
    assert_eq!(s.load().unwrap().objects.len(), 1);
}

// ---- Real processes --------------------------------------------------------

const CHILD_ENV: &str = "PADDOCK_STORE_TEST_CHILD";

/// Not a test on its own: the body of the child process the tests below spawn
/// (the test binary re-invoked with `CHILD_ENV` set). It writes projects in a loop
/// and prints `ACK <id>` after each durable commit.
#[test]
fn child_writer() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (path, prefix, count) = {
        let mut it = spec.split('|');
        let path = it.next().unwrap().to_string();
        let prefix = it.next().unwrap().to_string();
        let count: u64 = it.next().unwrap().parse().unwrap();
        (path, prefix, count)
    };
    let store = open(Path::new(&path));
    let mut out = std::io::stdout().lock();
    for i in 0..count {
        let id = format!("{prefix}-{i}");
        // Varying sizes so commits allocate, free and grow pages.
        store
            .commit(vec![Op::put(
                project(&id, (i as usize * 97) % 3000),
                Expect::Absent,
            )])
            .unwrap();
        writeln!(out, "ACK {id}").unwrap();
        out.flush().unwrap();
    }
}

fn spawn_child(path: &Path, prefix: &str, count: u64) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["store::tests::child_writer", "--exact", "--nocapture"])
        .env(CHILD_ENV, format!("{}|{prefix}|{count}", path.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child test process")
}

#[test]
fn kill_9_during_a_write_loop_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let mut acked: Vec<String> = Vec::new();
    // Several rounds on the same file: each crash is recovered by the next open.
    for (round, kill_after) in [7usize, 31, 64, 3].into_iter().enumerate() {
        let mut child = spawn_child(&path, &format!("r{round}"), 1_000_000);
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let mut seen = 0;
        while seen < kill_after {
            let line = lines.next().expect("child died early").unwrap();
            if let Some(id) = line.strip_prefix("ACK ") {
                acked.push(id.to_string());
                seen += 1;
            }
        }
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        // Acks printed before the kill but not read yet count too.
        for line in lines {
            if let Some(id) = line.unwrap().strip_prefix("ACK ") {
                acked.push(id.to_string());
            }
        }
        let store = open(&path);
        let snap = Snapshot::from_loaded(store.load().unwrap());
        for id in &acked {
            assert!(snap.project(id).is_some(), "acknowledged {id} lost");
        }
        // Revisions are contiguous: every commit wrote exactly one project.
        assert_eq!(snap.revision().0, snap.projects().count() as u64);
    }
}

#[test]
fn another_process_writes_while_this_one_has_the_store_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let server = StoreView::new(Arc::new(open(&path))).unwrap();
    server
        .commit(vec![Op::put(project("server-0", 1), Expect::Absent)])
        .unwrap();
    let mut child = spawn_child(&path, "cli", 20);
    // The server keeps writing while the CLI process does.
    for i in 1..20 {
        server
            .commit(vec![Op::put(
                project(&format!("server-{i}"), 1),
                Expect::Absent,
            )])
            .unwrap();
    }
    assert!(child.wait().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        server.refresh().unwrap();
        let snap = server.snapshot();
        if (0..20).all(|i| snap.project(&format!("cli-{i}")).is_some()) {
            assert!((0..20).all(|i| snap.project(&format!("server-{i}")).is_some()));
            assert_eq!(snap.revision(), Revision(40));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "server never saw the CLI's writes"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn kill_9_of_a_cli_writer_while_the_server_has_the_store_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let server = StoreView::new(Arc::new(open(&path))).unwrap();
    server
        .commit(vec![Op::put(project("server-0", 1), Expect::Absent)])
        .unwrap();
    let mut child = spawn_child(&path, "cli", 1_000_000);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acked = Vec::new();
    while acked.len() < 25 {
        let line = lines.next().expect("child died early").unwrap();
        if let Some(id) = line.strip_prefix("ACK ") {
            acked.push(id.to_string());
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    for line in lines {
        if let Some(id) = line.unwrap().strip_prefix("ACK ") {
            acked.push(id.to_string());
        }
    }
    // The server keeps working on the shared file after the writer died,
    // possibly mid-transaction holding the write lock.
    for i in 1..10 {
        server
            .commit(vec![Op::put(
                project(&format!("server-{i}"), 2000),
                Expect::Absent,
            )])
            .unwrap();
    }
    server.refresh().unwrap();
    let snap = server.snapshot();
    for id in &acked {
        assert!(snap.project(id).is_some(), "acknowledged {id} lost");
    }
    assert!((0..10).all(|i| snap.project(&format!("server-{i}")).is_some()));
    assert_eq!(snap.revision().0, snap.projects().count() as u64);
    // And a new process (handle) opens it fine.
    drop(server);
    let again = Snapshot::from_loaded(open(&path).load().unwrap());
    assert_eq!(again.projects().count(), snap.projects().count());
}

#[test]
fn a_reader_behind_the_compacted_change_log_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let opts = EmbeddedOptions::default().change_log_retain(3);
    let server =
        StoreView::new(Arc::new(EmbeddedStore::open(&path, opts.clone()).unwrap())).unwrap();
    let cli = EmbeddedStore::open(&path, opts).unwrap();
    cli.commit(vec![Op::put(project("p-0", 1), Expect::Absent)])
        .unwrap();
    for i in 1..6 {
        cli.commit(vec![Op::put(project(&format!("p-{i}"), 1), Expect::Absent)])
            .unwrap();
    }
    cli.commit(vec![Op::delete(
        Key::new(Kind::Project, "p-0"),
        Expect::Exists,
    )])
    .unwrap();
    assert_eq!(cli.changes_since(Revision(0)).unwrap(), Changes::Compacted);
    assert!(matches!(
        cli.changes_since(Revision(4)).unwrap(),
        Changes::Events { .. }
    ));
    // The server was at revision 0: it must reload, and see the delete too.
    assert!(server.refresh().unwrap());
    let snap = server.snapshot();
    assert_eq!(snap.revision(), Revision(7));
    assert!(snap.project("p-0").is_none());
    assert_eq!(snap.projects().count(), 5);
}

#[test]
fn newer_redb_file_format_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    drop(open(&path));
    // Both commit slots' format version byte (redb header offsets 64 and 192).
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[64] = 9;
    bytes[64 + 128] = 9;
    std::fs::write(&path, &bytes).unwrap();
    let before = file_hash(&path);
    let err = EmbeddedStore::open(&path, EmbeddedOptions::default()).unwrap_err();
    match &err {
        StoreError::NewerVersion { found, .. } => assert_eq!(found, "redb file format 9"),
        other => panic!("expected NewerVersion, got {other}"),
    }
    assert_eq!(file_hash(&path), before);
}
