//! `paddock store migrate --from <data-dir|etcd://...> --to <data-dir|etcd://...>`:
//! copies every object from one store to another (an embedded store into etcd
//! when moving to several replicas, and back).
//!
//! Idempotent: an object already in the destination with the same value is not
//! written again, so a second run writes nothing; one with another value is
//! overwritten by the source's. Objects only the destination has are left
//! alone and counted. At the end the destination is read back and every source
//! object must be there, equal, or the command fails.
//!
//! The token pepper is not in the store: the replicas on the destination must
//! read the same pepper file (`store.tokenPepperFile`), or every token stops
//! verifying.

use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    process::ExitCode,
    sync::Arc,
};

use proxy_core::store::{
    EmbeddedOptions, EmbeddedStore, EtcdOptions, EtcdStore, EtcdTls, Expect, Key, Object, Op,
    Store, StoreView,
};

#[derive(Debug, clap::Subcommand)]
pub(crate) enum StoreCommand {
    /// Copy every object from one store into another (idempotent; verifies).
    Migrate(MigrateArgs),
}

#[derive(Debug, clap::Args)]
pub(crate) struct MigrateArgs {
    /// The source: a data directory, or etcd://host:port[,host:port...]/prefix/
    /// (etcd+https:// for TLS).
    #[arg(long)]
    from: String,
    /// The destination, in the same forms.
    #[arg(long)]
    to: String,
    /// CA of the etcd members' certificates (etcd+https://).
    #[arg(long)]
    etcd_ca_file: Option<PathBuf>,
    /// Client certificate for etcd.
    #[arg(long, requires = "etcd_key_file")]
    etcd_cert_file: Option<PathBuf>,
    /// Its key.
    #[arg(long, requires = "etcd_cert_file")]
    etcd_key_file: Option<PathBuf>,
}

pub(crate) fn run(command: StoreCommand) -> ExitCode {
    let StoreCommand::Migrate(args) = command;
    match migrate(&args) {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("paddock: store migrate: {error}");
            ExitCode::FAILURE
        }
    }
}

fn open(location: &str, args: &MigrateArgs) -> Result<Arc<dyn Store>, String> {
    let (scheme, rest) = match location.split_once("://") {
        Some((scheme @ ("etcd" | "etcd+https"), rest)) => (scheme, rest),
        Some((other, _)) => {
            return Err(format!(
                "{location}: unknown scheme {other}:// (a data directory, etcd:// or etcd+https://)"
            ))
        }
        None => {
            let dir = PathBuf::from(location);
            let file = dir.join(EmbeddedStore::FILE_NAME);
            // A source must exist; a destination directory is created.
            let store = EmbeddedStore::open_in_dir(&dir, EmbeddedOptions::default())
                .map_err(|e| format!("{}: {e}", file.display()))?;
            return Ok(Arc::new(store));
        }
    };
    let (hosts, prefix) = match rest.split_once('/') {
        Some((hosts, "")) => (hosts, "/paddock/".to_owned()),
        Some((hosts, prefix)) => (hosts, format!("/{prefix}")),
        None => (rest, "/paddock/".to_owned()),
    };
    if hosts.is_empty() {
        return Err(format!("{location}: no etcd host"));
    }
    let http = if scheme == "etcd" { "http" } else { "https" };
    let endpoints = hosts
        .split(',')
        .map(|h| format!("{http}://{h}"))
        .collect::<Vec<_>>();
    let mut options = EtcdOptions::new(endpoints).prefix(&prefix);
    if scheme == "etcd+https" {
        let read = |p: &PathBuf| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
        let ca = args
            .etcd_ca_file
            .as_ref()
            .ok_or("etcd+https:// needs --etcd-ca-file")?;
        let identity = match (&args.etcd_cert_file, &args.etcd_key_file) {
            (Some(c), Some(k)) => Some((
                read(c)?,
                Arc::new(secrecy::SecretBox::new(Box::new(read(k)?))),
            )),
            _ => None,
        };
        options = options.tls(EtcdTls {
            ca_pem: read(ca)?,
            identity,
        });
    }
    EtcdStore::connect(options)
        .map(|s| Arc::new(s) as Arc<dyn Store>)
        .map_err(|e| e.to_string())
}

fn by_key(objects: Vec<proxy_core::store::Versioned>) -> HashMap<Key, Object> {
    objects
        .into_iter()
        .map(|v| (v.object.key(), v.object))
        .collect()
}

fn migrate(args: &MigrateArgs) -> Result<String, String> {
    if args.from == args.to {
        return Err("--from and --to are the same store".into());
    }
    if !args.from.contains("://")
        && !PathBuf::from(&args.from)
            .join(EmbeddedStore::FILE_NAME)
            .exists()
    {
        return Err(format!("no Paddock store in {}", args.from));
    }
    let source = open(&args.from, args)?;
    let destination = StoreView::new(open(&args.to, args)?).map_err(|e| e.to_string())?;
    let objects = source.load().map_err(|e| e.to_string())?.objects;
    let existing = by_key(
        destination
            .store()
            .load()
            .map_err(|e| e.to_string())?
            .objects,
    );
    let mut counts: BTreeMap<&'static str, (usize, usize)> = BTreeMap::new();
    let mut ops = Vec::new();
    for v in &objects {
        let key = v.object.key();
        let entry = counts.entry(key.kind.as_str()).or_default();
        entry.0 += 1;
        if existing.get(&key) != Some(&v.object) {
            entry.1 += 1;
            ops.push(Op::put(v.object.clone(), Expect::Any));
        }
    }
    let written = ops.len();
    destination
        .commit_batches(ops)
        .map_err(|e| format!("writing to {}: {e}", args.to))?;
    // Verify: everything the source has, the destination has, equal.
    let after = by_key(
        destination
            .store()
            .load()
            .map_err(|e| e.to_string())?
            .objects,
    );
    let missing = objects
        .iter()
        .filter(|v| after.get(&v.object.key()) != Some(&v.object))
        .count();
    if missing > 0 {
        return Err(format!(
            "{missing} objects are not in {} after the copy",
            args.to
        ));
    }
    let extra = after.len() - objects.len();
    let mut report = format!(
        "copied {} -> {}: {} objects, {written} written, {} already there",
        args.from,
        args.to,
        objects.len(),
        objects.len() - written
    );
    for (kind, (n, w)) in counts {
        report.push_str(&format!("\n  {kind}: {n} ({w} written)"));
    }
    if extra > 0 {
        report.push_str(&format!(
            "\n  {extra} objects only in the destination were left alone"
        ));
    }
    report.push_str(
        "\nverified: every source object is in the destination.\n\
         Tokens verify only with the same pepper: give the destination's replicas \
         the source's token-pepper file (store.tokenPepperFile).",
    );
    Ok(report)
}
