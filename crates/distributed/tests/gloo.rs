//! Two ranks as two threads of this test, over Gloo and a TCPStore on localhost.

use plandiff_distributed::{available, Backend, GradSync, Launch, ProcessGroup, ReduceOp};
use std::time::{Duration, Instant};
use tch::{Device, Kind, Tensor};

/// This build has Gloo; `make test` sets PLANDIFF_REQUIRE_GLOO, so there a missing Gloo fails.
fn gloo_or_skip() -> bool {
    if available().0 {
        return true;
    }
    assert!(
        std::env::var_os("PLANDIFF_REQUIRE_GLOO").is_none(),
        "PLANDIFF_REQUIRE_GLOO is set but this build has no Gloo"
    );
    eprintln!("SKIP: this build has no Gloo (apt-get install libgloo-dev, then rebuild)");
    false
}

/// One group joins at a time in this process: the tests run on parallel threads, and two
/// groups joining at once could pick the same just-freed port (`free_port`) and cross-connect.
/// (The SIGSEGV this binary used to hit about one run in 50 was another thing: c10d's flight
/// recorder racing between the two rank threads, fixed in the shim by `launch_lock`.)
static ONE_GROUP: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_group() -> std::sync::MutexGuard<'static, ()> {
    ONE_GROUP.lock().unwrap_or_else(|e| e.into_inner())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn launch(rank: usize, world_size: usize, port: u16) -> Launch {
    Launch {
        rank,
        world_size,
        local_rank: rank,
        master_addr: "127.0.0.1".into(),
        master_port: port,
        agent_store: false,
        restart_count: 0,
    }
}

/// Runs `f(rank, group)` on `world` threads, one rank each; returns their results by rank.
fn ranks<T: Send + 'static>(world: usize, f: fn(usize, ProcessGroup) -> T) -> Option<Vec<T>> {
    if !gloo_or_skip() {
        return None;
    }
    let _one = one_group();
    let port = free_port();
    let handles: Vec<_> = (0..world)
        .map(|rank| {
            std::thread::spawn(move || {
                let pg = ProcessGroup::init(&launch(rank, world, port), Backend::Gloo, Duration::from_secs(30))
                    .expect("join the group");
                f(rank, pg)
            })
        })
        .collect();
    Some(handles.into_iter().map(|h| h.join().expect("rank thread")).collect())
}

#[test]
fn all_reduce_broadcast_and_barrier() {
    let Some(out) = ranks(2, |rank, pg| {
        assert_eq!((pg.rank(), pg.world_size()), (rank, 2));
        let t = Tensor::from_slice(&[rank as f32 + 1.0, 10.0 * rank as f32]);
        pg.all_reduce(std::slice::from_ref(&t), ReduceOp::Sum).unwrap();
        let sum = Vec::<f32>::try_from(&t).unwrap();
        let m = Tensor::from_slice(&[rank as f64]);
        pg.all_reduce(std::slice::from_ref(&m), ReduceOp::Max).unwrap();
        let b = Tensor::from_slice(&[rank as i64 * 7 + 3; 3]);
        pg.broadcast(std::slice::from_ref(&b), 1).unwrap();
        pg.barrier().unwrap();
        let s = pg.sum_f64(&[0.5, rank as f64], Device::Cpu).unwrap();
        (sum, m.double_value(&[0]), Vec::<i64>::try_from(&b).unwrap(), s)
    }) else {
        return;
    };
    for (sum, max, b, s) in out {
        assert_eq!(sum, vec![3.0, 10.0]);
        assert_eq!(max, 1.0);
        assert_eq!(b, vec![10, 10, 10], "rank 1's tensor everywhere");
        assert_eq!(s, vec![1.0, 1.0]);
    }
}

#[test]
fn gradients_average_over_buckets_and_missing_gradients_count_as_zero() {
    let Some(out) = ranks(2, |rank, pg| {
        let params: Vec<Tensor> = [6i64, 4, 5]
            .iter()
            .map(|&n| Tensor::zeros([n], (Kind::Float, Device::Cpu)).set_requires_grad(true))
            .collect();
        // 40-byte buckets: [p0], [p1 p2]... p1 (16 bytes) + p2 (20 bytes) fit one.
        let sync = GradSync::new(&params, 40);
        assert_eq!(sync.buckets(), 2);
        let r = rank as f64 + 1.0;
        // Rank 0 leaves p2 unused; rank 1 uses every parameter.
        let used = if rank == 0 { 2 } else { 3 };
        let loss = params[..used]
            .iter()
            .enumerate()
            .map(|(i, p)| (p * ((i + 1) as f64 * r)).sum(Kind::Float))
            .fold(Tensor::zeros([], (Kind::Float, Device::Cpu)), |a, b| a + b);
        loss.backward();
        sync.all_reduce_mean(&pg, &params).unwrap();
        params.iter().map(|p| Vec::<f32>::try_from(p.grad()).unwrap()).collect::<Vec<_>>()
    }) else {
        return;
    };
    // grad of p_i on rank r is (i + 1)(r + 1); the mean over ranks 1 and 2 is 1.5 (i + 1);
    // p2 on rank 0 is zeros: (0 + 3 x 2) / 2 = 3.
    for grads in &out {
        assert!(grads[0].iter().all(|&g| g == 1.5));
        assert!(grads[1].iter().all(|&g| g == 3.0));
        assert!(grads[2].iter().all(|&g| g == 3.0), "{:?}", grads[2]);
    }
    assert_eq!(out[0], out[1]);
}

#[test]
fn a_missing_rank_times_out_in_one_line() {
    if !gloo_or_skip() {
        return;
    }
    // Rank 0 of 2 hosts the store; rank 1 never comes.
    let _one = one_group();
    let t0 = Instant::now();
    let err = ProcessGroup::init(&launch(0, 2, free_port()), Backend::Gloo, Duration::from_secs(2)).err();
    let err = err.expect("joining without rank 1 fails").to_string();
    assert!(t0.elapsed() < Duration::from_secs(30), "{:?}", t0.elapsed());
    assert!(!err.contains('\n') && err.starts_with("c10d init"), "{err}");
}
