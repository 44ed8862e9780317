//! Out of file descriptors, the hub waits instead of spinning: its accept loop backs
//! off, says so once per interval, counts the failures in `/metrics`, and accepts again
//! as soon as descriptors free up. The real binary runs under a descriptor limit lowered
//! with `prlimit` (util-linux) once it serves.

use std::process::Command;
use std::time::{Duration, Instant};

use neonex_testkit::binary::Server;
use neonex_testkit::raw::RawClient;
use tokio::net::TcpStream;

fn open_descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("the server's descriptors")
        .count()
}

/// User and system CPU time the process has used, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The fields after the command's closing parenthesis; utime and stime are the
    // 14th and 15th of the whole line.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_descriptors_the_accept_loop_backs_off_and_then_accepts_again() {
    let (server, addr) = Server::spawn(&["--shards", "1"], &[]).await;
    let pid = server.child.id();
    let limit = open_descriptors(pid) + 8;
    let lowered = Command::new("prlimit")
        .args([
            "--pid",
            &pid.to_string(),
            &format!("--nofile={limit}:{limit}"),
        ])
        .status()
        .expect("run prlimit (util-linux)");
    assert!(lowered.success(), "prlimit failed");

    // More clients than descriptors: the kernel completes their handshakes into the
    // backlog, and the hub takes as many as it can hold.
    let mut held = Vec::new();
    for _ in 0..24 {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while open_descriptors(pid) < limit {
        assert!(Instant::now() < deadline, "the hub never ran out");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Out of descriptors with connections waiting: the loop must rest, not retry.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = cpu_ticks(pid);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let used = cpu_ticks(pid) - before;
    // 100 ticks a second: 15 ticks is 5% of a core over the 3 s.
    assert!(
        used <= 15,
        "{used} ticks of CPU in 3 s while out of descriptors"
    );

    // Descriptors free up: the waiting clients are taken, and new ones served.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    let metrics = loop {
        let response = tokio::time::timeout(
            Duration::from_secs(3),
            RawClient::http(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
        )
        .await;
        if let Ok(response) = response {
            if response.status == 200 {
                break response.body;
            }
        }
        assert!(Instant::now() < deadline, "the hub never accepted again");
    };
    let errors: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("neonex_accept_errors_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert!(errors >= 1.0, "no accept errors counted:\n{metrics}");
    let warnings = server.log().matches("accept failing").count();
    assert!(
        (1..=2).contains(&warnings),
        "{warnings} warnings in a few seconds; the log:\n{}",
        server.log()
    );
}
