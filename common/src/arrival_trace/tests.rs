use super::*;

fn known<'a>(tasks: &[&'a str], inputs: &[&'a str]) -> Known<'a> {
    Known {
        tasks: tasks.to_vec(),
        inputs: inputs.to_vec(),
    }
}

/// A trace of `n` lines 10 ms apart, each with its own `q`.
fn trace(n: usize) -> Trace {
    let text: String = (0..n)
        .map(|i| {
            format!(
                "{{\"offset_ms\": {}, \"inputs\": {{\"q\": \"q{i}\", \"n\": {i}}}}}\n",
                i * 10
            )
        })
        .collect();
    Trace::parse("t.jsonl", "t.jsonl", &text, &known(&[], &["q", "n"])).unwrap()
}

/// The lines every worker fires, each with its index, merged in index order.
fn union(t: &Trace, segments: &[Segment], from: u64) -> Vec<(u64, TraceLine)> {
    let mut all: Vec<(u64, TraceLine)> = segments
        .iter()
        .flat_map(|s| t.share(s, from).map(|(i, l)| (i, l.clone())))
        .collect();
    all.sort_by_key(|(i, _)| *i);
    all
}

#[test]
fn the_workers_lines_together_are_the_trace_for_1_2_and_5_workers() {
    let t = trace(997);
    let whole: Vec<(u64, TraceLine)> = t
        .lines
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, l)| (i as u64, l))
        .collect();
    for shares in [vec![1], vec![1, 1], vec![1, 1, 1, 1, 1], vec![3, 1, 2, 1, 4]] {
        let segments = Segment::split(&shares);
        assert_eq!(union(&t, &segments, 0), whole, "shares {shares:?}");
        // Each worker got about its share, not everything.
        let den: u64 = shares.iter().map(|&s| u64::from(s)).sum();
        for (seg, &s) in segments.iter().zip(&shares) {
            let got = t.share(seg, 0).count() as f64;
            let exact = 997.0 * f64::from(s) / den as f64;
            assert!(
                (got - exact).abs() <= f64::from(s) + 1.0,
                "{shares:?}: {got} vs {exact}"
            );
        }
    }
}

#[test]
fn a_re_split_at_a_from_index_hands_out_the_rest_exactly_once() {
    let t = trace(500);
    // Two workers fire lines 0..from (as far as the first split goes), then a third
    // joins and the three split the rest from `from` on.
    let from = t.count_before(Duration::from_millis(1234));
    assert_eq!(from, 124, "lines at 0, 10, ..., 1230 ms are due before 1234 ms");
    let before: Vec<(u64, TraceLine)> = union(&t, &Segment::split(&[1, 1]), 0)
        .into_iter()
        .filter(|(i, _)| *i < from)
        .collect();
    let after = union(&t, &Segment::split(&[1, 1, 1]), from);
    let fired: Vec<(u64, TraceLine)> = before.into_iter().chain(after).collect();
    let whole: Vec<(u64, TraceLine)> = t
        .lines
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, l)| (i as u64, l))
        .collect();
    assert_eq!(fired, whole);
}

#[test]
fn lines_survive_the_wire() {
    let t = Trace::parse(
        "t.jsonl",
        "t.jsonl",
        "{\"offset_ms\": 0.5, \"task\": \"ask\", \"inputs\": {\"query\": \"hé\", \"k\": 2.5}}\n\n{\"offset_ms\": 3}\n",
        &known(&["ask"], &["query", "k"]),
    )
    .unwrap();
    let wire: Vec<v1::TraceArrival> = t.share(&Segment::ALL, 0).map(|(i, l)| line_to_proto(i, l)).collect();
    let back = lines_from_proto(&wire);
    assert_eq!(back.len(), 2);
    assert_eq!(back[0].1, t.lines[0]);
    assert_eq!(back[0].1.offset_us, 500);
    assert_eq!(
        back[0].1.inputs,
        [("k".into(), "2.5".into()), ("query".into(), "hé".into())]
    );
    assert_eq!((back[1].0, back[1].1.offset_us), (1, 3000));
    assert_eq!(t.span(), Duration::from_millis(3));
    t.fits_one_message().unwrap();
}

#[test]
fn a_peer_s_lines_out_of_order_or_oversized_are_dropped_or_bounded() {
    let line = |index, offset_us, name: &str| v1::TraceArrival {
        index,
        offset_us,
        task: "t".repeat(200),
        inputs: vec![
            v1::TraceInput {
                name: name.into(),
                value: "v".into(),
            };
            100
        ],
    };
    let back = lines_from_proto(&[
        line(5, 100, "é".repeat(40).as_str()),
        line(5, 200, "a"),
        line(6, 50, "a"),
        line(7, -3, "a"),
    ]);
    // Index 5 again and an offset going back are dropped; a negative offset is 0, and
    // then goes back too.
    assert_eq!(back.len(), 1);
    let l = &back[0].1;
    assert_eq!(l.inputs.len(), MAX_INPUTS);
    assert!(l.inputs[0].0.len() <= MAX_NAME && l.task.as_ref().unwrap().len() == MAX_NAME);
}

#[test]
fn validation_names_the_file_the_line_and_the_problem() {
    let err = |text: &str| Trace::parse("dir/t.jsonl", "t.jsonl", text, &known(&["ask", "chat"], &["q"])).unwrap_err();
    let e = err("{\"offset_ms\": 1}\n{\"offset_ms\": 2,}\n");
    assert!(e.starts_with("dir/t.jsonl:2: not a trace line ("), "{e}");
    let e = err("{\"offset_ms\": 5}\n\n{\"offset_ms\": 4}\n");
    assert_eq!(
        e,
        "dir/t.jsonl:3: offset_ms 4 goes backwards (the line before is at 5 ms); offsets never decrease"
    );
    let e = err("{\"offset_ms\": 1, \"task\": \"nope\"}");
    assert_eq!(
        e,
        "dir/t.jsonl:1: unknown task `nope`; the scenario's tasks are ask, chat"
    );
    let e = err("{\"offset_ms\": -1}");
    assert!(e.starts_with("dir/t.jsonl:1: offset_ms -1 is not an offset"), "{e}");
    let e = err("{\"offset_ms\": 1, \"inputs\": {\"q\": [1]}}");
    assert_eq!(e, "dir/t.jsonl:1: inputs.q is an array; expected a string or a number");
    let e = err("{\"offset_ms\": 1, \"inputs\": {\"qq\": 1}}");
    assert_eq!(
        e,
        "dir/t.jsonl:1: input `qq` is not a data pool of the scenario; a line's inputs stand in for pool values (declare [data.qq], whose values serve lines and runs without it)"
    );
    let e = err("{\"offset\": 1}");
    assert!(e.contains("unknown field `offset`"), "{e}");
    let e = err("\n\n");
    assert_eq!(
        e,
        "dir/t.jsonl: the trace has no arrivals; expected one JSON object per line"
    );
}

#[test]
fn a_trace_over_its_bounds_is_refused_and_says_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.jsonl");
    let line = "{\"offset_ms\": 0}\n";
    std::fs::write(&big, line.repeat((MAX_TRACE_BYTES as usize) / line.len() + 1)).unwrap();
    let e = Trace::load(&big, &Known::default()).unwrap_err();
    assert!(e.ends_with("big.jsonl: too large: a trace is at most 8 MiB (its lines travel to the workers in one message); split it into several runs"), "{e}");
    let many = "{\"offset_ms\":0}\n".repeat(MAX_TRACE_LINES + 1);
    let e = Trace::parse("many.jsonl", "many.jsonl", &many, &Known::default()).unwrap_err();
    assert_eq!(
        e,
        format!(
            "many.jsonl:{}: too many lines: a trace holds at most 1000000 arrivals; split it into several runs",
            MAX_TRACE_LINES + 1
        )
    );
    let e = Trace::load(&dir.path().join("absent.jsonl"), &Known::default()).unwrap_err();
    assert!(e.contains("absent.jsonl: cannot read the trace"), "{e}");
}
