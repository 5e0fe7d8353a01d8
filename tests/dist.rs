//! Data parallelism over c10d: real Gloo process groups on 127.0.0.1, each rank its own
//! process (this test binary run again with the rank's environment, as torchrun would).
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tch::{Kind, Tensor};
use workbench::engine::dist::{ProcessGroup, RankEnv};

/// Set in a child: which scenario it plays.
const ROLE: &str = "WORKBENCH_DIST_TEST_ROLE";

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Runs `test` once per rank, each in its own process, and checks that every rank passed.
fn ranks(test: &str, role: &str, world: usize) {
    let port = free_port().to_string();
    let exe = std::env::current_exe().expect("test binary");
    let children: Vec<_> = (0..world)
        .map(|rank| {
            Command::new(&exe)
                .args([test, "--exact", "--nocapture", "--test-threads=1"])
                .env(ROLE, role)
                .env("RANK", rank.to_string())
                .env("WORLD_SIZE", world.to_string())
                .env("LOCAL_RANK", rank.to_string())
                .env("MASTER_ADDR", "127.0.0.1")
                .env("MASTER_PORT", &port)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn a rank")
        })
        .collect();
    for (rank, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().expect("rank output");
        assert!(
            out.status.success(),
            "rank {rank}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn join() -> ProcessGroup {
    let env = RankEnv::from_env().expect("env").expect("a world of two");
    ProcessGroup::join(&env, Duration::from_secs(20)).expect("join")
}

/// All-reduce, mean, broadcast and barrier give every rank the same, right values.
#[test]
fn two_gloo_ranks_reduce_and_broadcast() {
    if std::env::var(ROLE).is_ok_and(|r| r == "collectives") {
        let g = join();
        let r = g.rank() as f64;
        let t = Tensor::full([5], r + 1.0, (Kind::Float, tch::Device::Cpu));
        g.all_reduce_sum(&t).expect("all-reduce");
        assert_eq!(Vec::<f32>::try_from(&t).expect("values"), vec![3.0; 5]);
        // Two kinds, odd shapes: the buckets give each tensor back its own mean.
        let a = Tensor::full([2, 3], r, (Kind::Float, tch::Device::Cpu));
        let b = Tensor::full([7], 10.0 * r, (Kind::Double, tch::Device::Cpu));
        g.mean(&[a.shallow_clone(), b.shallow_clone()])
            .expect("mean");
        assert_eq!(
            Vec::<f32>::try_from(&a.reshape([-1])).expect("a"),
            vec![0.5; 6]
        );
        assert_eq!(Vec::<f64>::try_from(&b).expect("b"), vec![5.0; 7]);
        let c = Tensor::full([4], r + 7.0, (Kind::Float, tch::Device::Cpu));
        g.broadcast_all(&[c.shallow_clone()]).expect("broadcast");
        assert_eq!(Vec::<f32>::try_from(&c).expect("c"), vec![7.0; 4]);
        g.barrier().expect("barrier");
        return;
    }
    ranks("two_gloo_ranks_reduce_and_broadcast", "collectives", 2);
}

/// A rank that dies ends its peer's next collective with an error, well within the timeout,
/// instead of a hang.
#[test]
fn a_dead_rank_ends_the_other_with_an_error() {
    if std::env::var(ROLE).is_ok_and(|r| r == "dies") {
        let g = join();
        g.barrier().expect("both joined");
        if g.rank() == 1 {
            std::process::exit(0);
        }
        let started = Instant::now();
        let t = Tensor::ones([3], (Kind::Float, tch::Device::Cpu));
        let e = g.all_reduce_sum(&t).expect_err("the peer is gone");
        let text = e.to_string();
        assert!(text.starts_with("all-reduce failed on rank 0"), "{text}");
        assert!(!text.contains('\n'), "one line: {text}");
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{:?}",
            started.elapsed()
        );
        println!("peer death seen after {:?}: {text}", started.elapsed());
        return;
    }
    ranks("a_dead_rank_ends_the_other_with_an_error", "dies", 2);
}
