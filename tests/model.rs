//! Property test: random alloc/free sequences against a model. No two live
//! blocks overlap and every block keeps its contents until freed.

use homeslab::{Pool, PoolBox};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Alloc(u64),
    Free(usize),
    Write(usize, u64),
    FreeElsewhere(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => any::<u64>().prop_map(Op::Alloc),
        2 => any::<usize>().prop_map(Op::Free),
        1 => (any::<usize>(), any::<u64>()).prop_map(|(i, v)| Op::Write(i, v)),
        1 => any::<usize>().prop_map(Op::FreeElsewhere),
    ]
}

type Block = [u64; 5];

fn run(pool: &Pool<Block>, ops: &[Op]) {
    let mut live: Vec<(PoolBox<Block>, u64)> = Vec::new();
    let mut elsewhere = Vec::new();
    for op in ops {
        match *op {
            Op::Alloc(v) => {
                let b = pool.alloc([v; 5]).unwrap();
                let start = &*b as *const Block as usize;
                let end = start + std::mem::size_of::<Block>();
                for (other, _) in &live {
                    let s = &**other as *const Block as usize;
                    let e = s + std::mem::size_of::<Block>();
                    assert!(end <= s || e <= start, "overlapping live blocks");
                }
                live.push((b, v));
            }
            Op::Free(i) if !live.is_empty() => {
                let (b, v) = live.swap_remove(i % live.len());
                assert_eq!(*b, [v; 5]);
            }
            Op::Write(i, nv) if !live.is_empty() => {
                let n = live.len();
                let (b, v) = &mut live[i % n];
                **b = [nv; 5];
                *v = nv;
            }
            Op::FreeElsewhere(i) if !live.is_empty() => {
                let (b, v) = live.swap_remove(i % live.len());
                assert_eq!(*b, [v; 5]);
                elsewhere.push(b);
            }
            _ => {}
        }
        for (b, v) in &live {
            assert_eq!(**b, [*v; 5], "a live block lost its contents");
        }
    }
    // Remote frees, then the owner keeps going on the same slabs.
    std::thread::spawn(move || drop(elsewhere)).join().unwrap();
    for (b, v) in &live {
        assert_eq!(**b, [*v; 5]);
    }
    let n = live.len() as u64;
    assert_eq!(pool.stats().live_blocks, n);
    drop(live);
    assert_eq!(pool.stats().live_blocks, 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn plain_pool_matches_model(ops in prop::collection::vec(op(), 1..400)) {
        let pool = Pool::<Block>::builder().slab_capacity(7).build().unwrap();
        run(&pool, &ops);
    }

    #[test]
    fn hardened_pool_matches_model(ops in prop::collection::vec(op(), 1..400)) {
        let pool = Pool::<Block>::builder().hardened(true).slab_capacity(3).build().unwrap();
        run(&pool, &ops);
        prop_assert_eq!(pool.stats().corruption_events, 0);
    }
}
