use super::*;
use std::path::Path;

#[test]
fn arms_parse() {
    let d = Path::new("b");
    let a = parse_arms("hybrid, ar,ar=other/b", d).unwrap();
    assert_eq!(a.len(), 3);
    assert_eq!((a[0].kind.as_str(), a[0].bundle.as_path()), ("hybrid", d));
    assert_eq!((a[2].kind.as_str(), a[2].bundle.as_path()), ("ar", Path::new("other/b")));
    assert!(parse_arms("hybrid", d).is_err());
    assert!(parse_arms("hybrid,ar,ar", d).is_err());
    assert!(parse_arms("hybrid,gpt", d).unwrap_err().to_string().contains("unknown arm"));
    assert_eq!(parse_arms("ar,diffusion", d).unwrap()[1].kind, "diffusion");
    assert_eq!(parse_arms("ar,oracle", d).unwrap()[1].kind, "oracle");
    let m = parse_arms("masked@32,masked@128=x,ar", d).unwrap();
    assert_eq!((m[0].kind.as_str(), m[0].steps, m[0].name.as_str()), ("masked", Some(32), "masked@32"));
    assert_eq!((m[1].steps, m[1].bundle.as_path()), (Some(128), Path::new("x")));
    assert_eq!(m[2].steps, None);
    assert!(parse_arms("masked@0,ar", d).unwrap_err().to_string().contains("KIND@STEPS"));
    assert!(parse_arms("masked@x,ar", d).is_err());
}

#[test]
fn prompts_from_lines_and_jsonl() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("p.txt");
    std::fs::write(&t, "one.\n\n two. \n").unwrap();
    let p = read_prompts(&t).unwrap();
    assert_eq!(p.len(), 2);
    assert_eq!(p[1].prompt, "two.");
    let j = dir.path().join("p.jsonl");
    std::fs::write(&j, "{\"prompt\": \"a.\", \"reference\": \"b.\"}\n{\"prompt\": \"c.\"}\n").unwrap();
    let p = read_prompts(&j).unwrap();
    assert_eq!(p[0].reference.as_deref(), Some("b."));
    assert!(p[1].reference.is_none());
    std::fs::write(&j, "{\"prompt\": \"a.\"}\n{oops\n").unwrap();
    assert!(read_prompts(&j).unwrap_err().to_string().contains("line 2"));
    std::fs::write(&j, "{\"prompt\": \"a.\", \"outline\": [\"x.\", \"\", \"_\", \"y\", \"\"]}\n").unwrap();
    let o = read_prompts(&j).unwrap()[0].outline.clone().unwrap();
    assert_eq!(o, vec![Some("x.".to_string()), None, None, Some("y".to_string())], "trailing free slots are dropped");
    for bad in ["{\"prompt\": \"a.\", \"outline\": \"x\"}", "{\"prompt\": \"a.\", \"outline\": [\"\", \"_\"]}"] {
        std::fs::write(&j, format!("{bad}\n")).unwrap();
        assert!(read_prompts(&j).unwrap_err().to_string().contains("line 1"), "{bad}");
    }
    std::fs::write(&t, "\n\n").unwrap();
    assert!(read_prompts(&t).unwrap_err().to_string().contains("no prompt"));
}

#[test]
fn per_prompt_and_aggregates_are_means() {
    let rec = |c: &str, tokens: f64| SampleRecord {
        sample: 0,
        seed: 0,
        text: c.into(),
        continuation: c.into(),
        metrics: BTreeMap::from([("tokens".to_string(), tokens)]),
        judge: None,
    };
    let p1 = vec![rec("a b", 2.0), rec("a c", 4.0)];
    let p2 = vec![rec("x", 9.0)];
    let mk = |s: Vec<SampleRecord>| PromptRecord {
        prompt: "p".into(),
        reference: None,
        per_prompt: BTreeMap::from([("ar".to_string(), per_prompt(&s))]),
        samples: BTreeMap::from([("ar".to_string(), s)]),
    };
    let recs = vec![mk(p1), mk(p2)];
    assert_eq!(recs[0].per_prompt["ar"]["tokens"], 3.0);
    assert!((recs[0].per_prompt["ar"]["distinct_1"] - 3.0 / 4.0).abs() < 1e-12);
    let agg = aggregate(&recs, &["ar".to_string()]);
    assert!((agg["ar"]["tokens"] - 5.0).abs() < 1e-12, "per-sample metrics average over samples");
    let d1 = (0.75 + 1.0) / 2.0;
    assert!((agg["ar"]["distinct_1"] - d1).abs() < 1e-12, "per-prompt metrics average over prompts");
}
