//! ns per emulated MMIO `mov`, `lock cmpxchg` and 4 KiB `rep movsb`
//! (`cargo bench -p halifax-emu-bench`).

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use halifax_emu::{Emulator, StepOutcome};
use halifax_emu_bench::*;

fn bench(c: &mut Criterion) {
    let (mut cpu, mut mem) = guest();
    let emu = Emulator {
        max_rep_iterations: 1024,
        ..Emulator::default()
    };
    c.bench_function("halifax/mmio_mov", |b| {
        b.iter(|| {
            setup_mov(&mut cpu);
            emu.step(&mut cpu, &mut mem, Some(black_box(MOV_MMIO)))
                .unwrap()
        })
    });
    c.bench_function("halifax/lock_cmpxchg", |b| {
        b.iter(|| {
            setup_cmpxchg(&mut cpu, &mut mem);
            emu.step(&mut cpu, &mut mem, Some(black_box(LOCK_CMPXCHG)))
                .unwrap()
        })
    });
    c.bench_function("halifax/rep_movsb_4k", |b| {
        b.iter(|| {
            setup_movsb(&mut cpu);
            while emu
                .step(&mut cpu, &mut mem, Some(black_box(REP_MOVSB)))
                .unwrap()
                == StepOutcome::Interrupted
            {}
            assert_eq!(cpu.gpr[1], 0);
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
