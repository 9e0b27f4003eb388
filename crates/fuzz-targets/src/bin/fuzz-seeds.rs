//! Writes the seeds of every fuzz target (see `onshi_fuzz_targets::seeds`) into
//! `<corpus>/<target>/`, the folders cargo-fuzz reads. Run by `scripts/fuzz.sh`.

fn main() {
    let Some(corpus) = std::env::args_os().nth(1).map(std::path::PathBuf::from) else {
        eprintln!("usage: fuzz-seeds CORPUS_FOLDER");
        std::process::exit(2);
    };
    for (target, _) in onshi_fuzz_targets::TARGETS {
        let folder = corpus.join(target);
        if let Err(e) = std::fs::create_dir_all(&folder) {
            eprintln!("cannot make {}: {e}", folder.display());
            std::process::exit(1);
        }
        let seeds = onshi_fuzz_targets::seeds(target);
        for (name, bytes) in &seeds {
            let path = folder.join(format!("seed-{name}"));
            if let Err(e) = std::fs::write(&path, bytes) {
                eprintln!("cannot write {}: {e}", path.display());
                std::process::exit(1);
            }
        }
        println!("{target}: {} seeds in {}", seeds.len(), folder.display());
    }
}
