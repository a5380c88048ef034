use homeslab::Pool;
#[test]
fn smoke() {
    let pool: Pool<[u64; 8]> = Pool::new();
    let mut v = Vec::new();
    for i in 0..10_000u64 {
        v.push(pool.alloc([i; 8]).unwrap());
    }
    for (i, b) in v.iter().enumerate() {
        assert_eq!(b[0], i as u64);
    }
    let s = pool.stats();
    assert_eq!(s.live_blocks, 10_000);
    let half: Vec<_> = v.split_off(5000);
    std::thread::spawn(move || drop(half)).join().unwrap();
    drop(v);
    let s = pool.stats();
    assert_eq!(s.live_blocks, 0, "{s:?}");
    assert_eq!(s.remote_frees, 5000);
    println!("{s:?}");
    let r = pool.trim();
    println!("trim {r} {:?}", pool.stats());
}
