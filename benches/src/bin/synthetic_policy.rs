//! Prints [`paddock_benches::synthetic_policy::yaml`] (10,000 bindings) for
//! a policy directory: what `benches/ab.sh`'s `policy` configuration decides
//! with.
//!
//! ```sh
//! cargo run --release -p paddock-benches --bin synthetic_policy > policy/synthetic.yaml
//! ```

use std::io::Write as _;

fn main() -> std::io::Result<()> {
    std::io::stdout().write_all(paddock_benches::synthetic_policy::yaml().as_bytes())
}
