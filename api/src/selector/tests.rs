use super::*;
use proptest::prelude::*;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn parse(s: &str) -> LabelSelector {
    LabelSelector::parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
}

fn parse_err(s: &str) -> String {
    match LabelSelector::parse(s) {
        Ok(sel) => panic!("{s:?} should not parse, got {sel}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn empty_selector_matches_everything() {
    for s in ["", "  ", "\t\n"] {
        let sel = parse(s);
        assert!(sel.is_empty());
        assert!(sel.matches(&labels(&[])));
        assert!(sel.matches(&labels(&[("a", "b")])));
        assert_eq!(sel.to_string(), "");
    }
}

#[test]
fn equality_operators() {
    let l = labels(&[("app", "web"), ("tier", "front")]);
    assert!(parse("app=web").matches(&l));
    assert!(parse("app==web").matches(&l));
    assert!(!parse("app=db").matches(&l));
    assert!(parse("app!=db").matches(&l));
    assert!(!parse("app!=web").matches(&l));
    // A missing label satisfies != and notin, like Kubernetes.
    assert!(parse("env!=prod").matches(&l));
    assert!(parse("env notin (prod)").matches(&l));
    assert!(!parse("env=prod").matches(&l));
}

#[test]
fn set_operators() {
    let l = labels(&[("app", "web")]);
    assert!(parse("app in (db,web)").matches(&l));
    assert!(!parse("app in (db)").matches(&l));
    assert!(parse("app notin (db)").matches(&l));
    assert!(!parse("app notin (db, web)").matches(&l));
    assert!(parse("app").matches(&l));
    assert!(!parse("!app").matches(&l));
    assert!(parse("!env").matches(&l));
    assert!(!parse("env").matches(&l));
}

#[test]
fn comparison_operators() {
    let l = labels(&[("replicas", "5"), ("name", "x")]);
    assert!(parse("replicas>4").matches(&l));
    assert!(!parse("replicas>5").matches(&l));
    assert!(parse("replicas<6").matches(&l));
    assert!(!parse("missing<6").matches(&l));
    // A label that is not an integer never satisfies > or <.
    assert!(!parse("name>1").matches(&l));
    assert!(parse_err("replicas>x").contains("the value must be an integer"));
}

#[test]
fn comma_is_and_and_whitespace_is_tolerated() {
    let sel = parse(" app = web ,  tier in ( front , back ) , !canary ");
    assert_eq!(sel.requirements().len(), 3);
    assert!(sel.matches(&labels(&[("app", "web"), ("tier", "back")])));
    assert!(!sel.matches(&labels(&[("app", "web"), ("tier", "back"), ("canary", "")])));
    assert!(!sel.matches(&labels(&[("app", "web")])));
}

#[test]
fn requirements_are_sorted_by_key_and_printed_canonically() {
    let sel = parse("z=1,a in (c,b),m,!n,k!=v,x==y,g>3,h<4,q notin (b,a)");
    assert_eq!(
        sel.to_string(),
        "a in (b,c),g>3,h<4,k!=v,m,!n,q notin (a,b),x==y,z=1"
    );
}

#[test]
fn empty_values() {
    let sel = parse("a=");
    assert_eq!(
        sel.requirements()[0].values(),
        &BTreeSet::from([String::new()])
    );
    assert!(sel.matches(&labels(&[("a", "")])));
    assert_eq!(sel.to_string(), "a=");
    assert_eq!(parse("a in ()").to_string(), "a in ()");
    assert_eq!(parse("a in (,x)").to_string(), "a in (,x)");
    assert_eq!(parse("a in (x,)").to_string(), "a in (,x)");
    assert_eq!(parse("a in (x,,y)").to_string(), "a in (,x,y)");
    assert_eq!(parse("a=,b=c").to_string(), "a=,b=c");
}

#[test]
fn keywords_are_words_where_a_value_or_key_is_expected() {
    let sel = parse("in in (in,notin)");
    assert_eq!(sel.requirements()[0].key(), "in");
    assert!(sel.matches(&labels(&[("in", "notin")])));
    assert_eq!(
        parse("notin").requirements()[0].operator(),
        Operator::Exists
    );
    assert_eq!(
        parse("a=in").requirements()[0].values().first().unwrap(),
        "in"
    );
}

#[test]
fn prefixed_keys() {
    let sel = parse("app.kubernetes.io/name=web");
    assert!(sel.matches(&labels(&[("app.kubernetes.io/name", "web")])));
}

#[test]
fn syntax_errors_read_like_kubernetes() {
    assert_eq!(
        parse_err("a b"),
        "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"
    );
    assert_eq!(
        parse_err("a=b,"),
        "found '', expected: identifier after ','"
    );
    assert_eq!(
        parse_err("a=b c"),
        "found 'c', expected: ',' or 'end of string'"
    );
    assert_eq!(
        parse_err(",a"),
        "found ',', expected: !, identifier, or 'end of string'"
    );
    assert_eq!(
        parse_err("a in b"),
        "unable to parse requirement: found 'b' expected: '('"
    );
    assert_eq!(
        parse_err("a in (b"),
        "unable to parse requirement: found '', expected: ',' or ')'"
    );
    assert_eq!(
        parse_err("a in (b c)"),
        "unable to parse requirement: found 'c', expected: ',' or ')'"
    );
    assert_eq!(
        parse_err("a in (=)"),
        "unable to parse requirement: found '=', expected: ',', ')' or identifier"
    );
    assert_eq!(
        parse_err("a=(b)"),
        "unable to parse requirement: found '(', expected: identifier"
    );
    assert_eq!(
        parse_err("!"),
        "unable to parse requirement: found '', expected: identifier"
    );
    assert_eq!(
        parse_err("!a=b"),
        "found '=', expected: ',' or 'end of string'"
    );
    assert_eq!(
        parse_err("a=b=c"),
        "found '=', expected: ',' or 'end of string'"
    );
}

#[test]
fn invalid_keys_and_values_are_refused() {
    let e = parse_err("-a=b");
    assert!(e.starts_with("unable to parse requirement: key: Invalid value: \"-a\": name part must consist of alphanumeric characters"), "{e}");
    let e = parse_err("a/b/c=d");
    assert!(e.contains("a qualified name must consist of"), "{e}");
    let e = parse_err("Example.com/a=b");
    assert!(
        e.contains("prefix part a lowercase RFC 1123 subdomain"),
        "{e}"
    );
    let e = parse_err("/a=b");
    assert!(e.contains("prefix part must be non-empty"), "{e}");
    let e = parse_err("a/=b");
    assert!(e.contains("name part must be non-empty"), "{e}");
    let long = "k".repeat(64);
    assert!(
        parse_err(&format!("{long}=b")).contains("name part must be no more than 63 characters")
    );
    assert!(parse_err(&format!("a={long}")).contains("must be no more than 63 characters"));
    let e = parse_err("a=b_");
    assert!(
        e.contains("values[0][a]: Invalid value: \"b_\": a valid label must be an empty string"),
        "{e}"
    );
    assert!(parse_err("a=é").contains("a valid label must be"));
    parse(&format!("{}=b", "k".repeat(63)));
    parse(&format!("{}/a=b", "d".repeat(253)));
    assert!(parse_err(&format!("{}/a=b", "d".repeat(254)))
        .contains("prefix part must be no more than 253 characters"));
}

#[test]
fn nul_ends_the_input_like_kubernetes() {
    assert_eq!(parse("a=b\0garbage").to_string(), "a=b");
}

#[test]
fn requirement_new_validates_value_counts() {
    assert!(Requirement::new("a", Operator::In, Vec::<String>::new())
        .unwrap_err()
        .to_string()
        .contains("values set can't be empty"));
    assert!(Requirement::new("a", Operator::Equals, ["x", "y"])
        .unwrap_err()
        .to_string()
        .contains("exact-match compatibility requires one single value"));
    assert!(Requirement::new("a", Operator::Exists, ["x"])
        .unwrap_err()
        .to_string()
        .contains("values set must be empty"));
    assert!(Requirement::new("a", Operator::GreaterThan, ["1", "2"])
        .unwrap_err()
        .to_string()
        .contains("exactly one value is required"));
    let both = Requirement::new("-a", Operator::In, Vec::<String>::new())
        .unwrap_err()
        .to_string();
    assert!(
        both.starts_with('[')
            && both.contains("key: Invalid value")
            && both.contains("can't be empty"),
        "{both}"
    );
}

#[test]
fn add_keeps_key_order() {
    let mut sel = parse("b=1,d=2");
    sel.add(Requirement::new("c", Operator::Exists, Vec::<String>::new()).unwrap());
    sel.add(Requirement::new("a", Operator::DoesNotExist, Vec::<String>::new()).unwrap());
    assert_eq!(sel.to_string(), "!a,b=1,c,d=2");
    assert_eq!(parse(&sel.to_string()), sel);
}

#[test]
fn from_match_labels() {
    let sel = LabelSelector::from_match_labels(&labels(&[("b", "2"), ("a", "1")])).unwrap();
    assert_eq!(sel.to_string(), "a=1,b=2");
    assert!(LabelSelector::from_match_labels(&labels(&[("a", "-")])).is_err());
}

fn expr(key: &str, operator: &str, values: Option<&[&str]>) -> metav1::LabelSelectorRequirement {
    metav1::LabelSelectorRequirement {
        key: key.to_string(),
        operator: operator.to_string(),
        values: values.map(|v| v.iter().map(|s| s.to_string()).collect()),
    }
}

#[test]
fn structured_selector_converts() {
    let structured = metav1::LabelSelector {
        match_labels: Some(labels(&[("app", "web")])),
        match_expressions: Some(vec![
            expr("tier", "In", Some(&["front", "back"])),
            expr("env", "NotIn", Some(&["prod"])),
            expr("canary", "DoesNotExist", None),
            expr("team", "Exists", Some(&[])),
        ]),
    };
    let sel = LabelSelector::try_from(&structured).unwrap();
    assert_eq!(
        sel.to_string(),
        "app=web,!canary,env notin (prod),team,tier in (back,front)"
    );
    assert!(sel.matches(&labels(&[("app", "web"), ("tier", "front"), ("team", "x")])));
    assert!(!sel.matches(&labels(&[("app", "web"), ("tier", "front")])));
}

#[test]
fn structured_selector_empty_and_nil() {
    let empty = metav1::LabelSelector::default();
    let sel = label_selector_as_selector(Some(&empty)).unwrap().unwrap();
    assert!(sel.is_empty() && sel.matches(&labels(&[("a", "b")])));
    let empty_lists = metav1::LabelSelector {
        match_labels: Some(BTreeMap::new()),
        match_expressions: Some(vec![]),
    };
    assert!(LabelSelector::try_from(&empty_lists).unwrap().is_empty());
    assert_eq!(label_selector_as_selector(None).unwrap(), None);
}

#[test]
fn structured_selector_is_validated() {
    let bad_op = metav1::LabelSelector {
        match_expressions: Some(vec![expr("a", "Gt", Some(&["1"]))]),
        ..Default::default()
    };
    assert_eq!(
        LabelSelector::try_from(&bad_op).unwrap_err().to_string(),
        "\"Gt\" is not a valid label selector operator"
    );
    let in_without_values = metav1::LabelSelector {
        match_expressions: Some(vec![expr("a", "In", None)]),
        ..Default::default()
    };
    assert!(LabelSelector::try_from(&in_without_values)
        .unwrap_err()
        .to_string()
        .contains("values set can't be empty"));
    let exists_with_values = metav1::LabelSelector {
        match_expressions: Some(vec![expr("a", "Exists", Some(&["x"]))]),
        ..Default::default()
    };
    assert!(LabelSelector::try_from(&exists_with_values).is_err());
    let bad_label = metav1::LabelSelector {
        match_labels: Some(labels(&[("a b", "c")])),
        ..Default::default()
    };
    assert!(LabelSelector::try_from(&bad_label).is_err());
}

// Field selectors.

fn fields(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
    move |path| {
        pairs
            .iter()
            .find(|(k, _)| *k == path)
            .map(|(_, v)| v.to_string())
    }
}

#[test]
fn field_selector_parses_and_matches() {
    let sel =
        FieldSelector::parse("metadata.name=x,spec.nodeName!=,status.phase==Running").unwrap();
    assert_eq!(
        sel.to_string(),
        "metadata.name=x,spec.nodeName!=,status.phase=Running"
    );
    let pod = fields(&[
        ("metadata.name", "x"),
        ("spec.nodeName", "n1"),
        ("status.phase", "Running"),
    ]);
    assert!(sel.matches(&pod));
    let unscheduled = fields(&[("metadata.name", "x"), ("status.phase", "Running")]);
    assert!(
        !sel.matches(unscheduled),
        "a missing field compares as \"\""
    );
    assert!(FieldSelector::parse("").unwrap().is_empty());
    assert!(
        FieldSelector::parse("a=b,,c=d")
            .unwrap()
            .requirements()
            .len()
            == 2
    );
    assert_eq!(sel.requires_exact_match("metadata.name"), Some("x"));
    assert_eq!(sel.requires_exact_match("spec.nodeName"), None);
}

#[test]
fn field_selector_escaping() {
    let sel = FieldSelector::parse(r"metadata.name=a\,b\=c\\d").unwrap();
    assert_eq!(sel.requirements()[0].value(), r"a,b=c\d");
    assert_eq!(sel.to_string(), r"metadata.name=a\,b\=c\\d");
    assert_eq!(
        FieldSelector::parse(r"a=b\x").unwrap_err().to_string(),
        r"invalid field selector: invalid escape sequence: \x"
    );
    assert_eq!(
        FieldSelector::parse(r"a=b\").unwrap_err(),
        SelectorError::InvalidEscapeSequence("\\".to_string())
    );
    assert_eq!(
        FieldSelector::parse("a=b=c").unwrap_err(),
        SelectorError::UnescapedCharacter('=')
    );
    assert_eq!(
        FieldSelector::parse("a").unwrap_err().to_string(),
        "invalid selector: 'a'; can't understand 'a'"
    );
}

#[test]
fn field_selector_operators_split_like_kubernetes() {
    let sel = FieldSelector::parse("a!=b").unwrap();
    assert_eq!(sel.requirements()[0].operator(), FieldOperator::NotEquals);
    let sel = FieldSelector::parse("a==b").unwrap();
    assert_eq!(sel.requirements()[0].operator(), FieldOperator::Equals);
    assert_eq!(sel.requirements()[0].value(), "b");
    // Kubernetes keeps the spaces: the field is "a " and the API server then refuses it.
    let sel = FieldSelector::parse("a = b").unwrap();
    assert_eq!(sel.requirements()[0].field(), "a ");
    assert_eq!(sel.requirements()[0].value(), " b");
    assert_eq!(
        FieldSelector::parse("a==b").unwrap(),
        FieldSelector::parse("a=b").unwrap()
    );
}

#[test]
fn field_values_from_json() {
    let pod = serde_json::json!({
        "metadata": {"name": "web-1", "namespace": "default"},
        "spec": {"nodeName": "n1", "hostNetwork": true, "priority": 10},
        "status": {"phase": "Running"}
    });
    let supported = [
        "metadata.name",
        "metadata.namespace",
        "spec.nodeName",
        "spec.hostNetwork",
        "spec.priority",
        "spec.schedulerName",
        "status.phase",
    ];
    assert_eq!(
        json_field_value(&pod, &supported, "spec.nodeName").unwrap(),
        "n1"
    );
    assert_eq!(
        json_field_value(&pod, &supported, "spec.hostNetwork").unwrap(),
        "true"
    );
    assert_eq!(
        json_field_value(&pod, &supported, "spec.priority").unwrap(),
        "10"
    );
    assert_eq!(
        json_field_value(&pod, &supported, "spec.schedulerName").unwrap(),
        ""
    );
    assert_eq!(
        json_field_value(&pod, &supported, "spec.restartPolicy")
            .unwrap_err()
            .to_string(),
        "field label not supported: spec.restartPolicy"
    );
    let sel = FieldSelector::parse("spec.nodeName=n1,status.phase!=Failed").unwrap();
    assert!(sel.matches_object(&pod, &supported).unwrap());
    let sel = FieldSelector::parse("spec.schedulerName=").unwrap();
    assert!(sel.matches_object(&pod, &supported).unwrap());
    let sel = FieldSelector::parse("spec.foo=x").unwrap();
    assert_eq!(
        sel.matches_object(&pod, &supported).unwrap_err(),
        SelectorError::UnsupportedField("spec.foo".to_string())
    );
}

// Property tests.

/// A requirement as plain data, evaluated by the test's own rules rather than the module's.
#[derive(Debug, Clone)]
struct Model {
    key: String,
    op: &'static str,
    values: Vec<String>,
}

impl Model {
    fn render(&self) -> String {
        match self.op {
            "exists" => self.key.clone(),
            "!" => format!("!{}", self.key),
            "in" | "notin" => format!("{} {} ({})", self.key, self.op, self.values.join(",")),
            op => format!("{}{op}{}", self.key, self.values[0]),
        }
    }

    fn holds(&self, labels: &BTreeMap<String, String>) -> bool {
        let v = labels.get(&self.key);
        match self.op {
            "exists" => v.is_some(),
            "!" => v.is_none(),
            "=" | "==" | "in" => v.is_some_and(|v| self.values.contains(v)),
            "!=" | "notin" => !v.is_some_and(|v| self.values.contains(v)),
            ">" | "<" => match v.and_then(|v| v.parse::<i64>().ok()) {
                None => false,
                Some(have) => {
                    let want: i64 = self.values[0].parse().unwrap();
                    if self.op == ">" {
                        have > want
                    } else {
                        have < want
                    }
                }
            },
            _ => unreachable!(),
        }
    }
}

fn key_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec!["a", "b", "app", "in", "notin", "x.y", "k8s.io/name"]).prop_map(String::from),
        1 => "([a-z0-9]{1,4}(\\.[a-z0-9]{1,3})?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,6}[A-Za-z0-9])?",
    ]
}

fn value_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec!["", "1", "7", "web", "in", "notin", "a.b-c_d"]).prop_map(String::from),
        1 => "([A-Za-z0-9]([-A-Za-z0-9_.]{0,6}[A-Za-z0-9])?)?",
    ]
}

fn model_strategy() -> impl Strategy<Value = Model> {
    let ops = prop::sample::select(vec![
        "=", "==", "!=", "in", "notin", "exists", "!", ">", "<",
    ]);
    (
        key_strategy(),
        ops,
        prop::collection::vec(value_strategy(), 1..4),
        0i64..20,
    )
        .prop_map(|(key, op, mut values, n)| {
            match op {
                "exists" | "!" => values.clear(),
                ">" | "<" => values = vec![n.to_string()],
                "in" | "notin" => {
                    values.sort();
                    values.dedup();
                }
                _ => values.truncate(1),
            }
            Model { key, op, values }
        })
}

fn labels_strategy() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(key_strategy(), value_strategy(), 0..5)
}

fn operator_of(op: &str) -> Operator {
    match op {
        "=" => Operator::Equals,
        "==" => Operator::DoubleEquals,
        "!=" => Operator::NotEquals,
        "in" => Operator::In,
        "notin" => Operator::NotIn,
        "exists" => Operator::Exists,
        "!" => Operator::DoesNotExist,
        ">" => Operator::GreaterThan,
        _ => Operator::LessThan,
    }
}

proptest! {
    #[test]
    fn label_parse_never_panics(s in any::<String>()) {
        let _ = LabelSelector::parse(&s);
    }

    #[test]
    fn label_parse_never_panics_on_selector_like_text(s in "[a-z0-9=!(),<> \\t/._-]{0,40}|(in|notin|[!=(),<>]| |a){0,12}") {
        if let Ok(sel) = LabelSelector::parse(&s) {
            // Whatever parses prints to something that parses back to the same selector.
            prop_assert_eq!(LabelSelector::parse(&sel.to_string()).unwrap(), sel);
        }
    }

    #[test]
    fn label_display_round_trips(models in prop::collection::vec(model_strategy(), 0..5)) {
        let requirements = models
            .iter()
            .map(|m| Requirement::new(m.key.clone(), operator_of(m.op), m.values.clone()).unwrap())
            .collect();
        let sel = LabelSelector::new(requirements);
        let printed = sel.to_string();
        let reparsed = LabelSelector::parse(&printed).unwrap();
        prop_assert_eq!(&reparsed, &sel, "printed as {}", printed);
        prop_assert_eq!(reparsed.to_string(), printed);
    }

    #[test]
    fn label_matching_agrees_with_reference(
        models in prop::collection::vec(model_strategy(), 0..5),
        labels in labels_strategy(),
    ) {
        let text = models.iter().map(Model::render).collect::<Vec<_>>().join(" , ");
        let sel = LabelSelector::parse(&text).unwrap();
        let expected = models.iter().all(|m| m.holds(&labels));
        prop_assert_eq!(sel.matches(&labels), expected, "selector {}", text);
    }

    #[test]
    fn field_parse_never_panics(s in any::<String>()) {
        let _ = FieldSelector::parse(&s);
    }

    #[test]
    fn field_display_round_trips(
        terms in prop::collection::vec(("[a-z]{1,5}(\\.[a-zA-Z]{1,6}){0,2}", any::<bool>(), any::<String>()), 0..5),
    ) {
        let sel = FieldSelector::new(
            terms
                .into_iter()
                .map(|(f, eq, v)| {
                    let op = if eq { FieldOperator::Equals } else { FieldOperator::NotEquals };
                    FieldRequirement::new(f, op, v)
                })
                .collect(),
        );
        let printed = sel.to_string();
        prop_assert_eq!(FieldSelector::parse(&printed).unwrap(), sel);
    }

    #[test]
    fn field_matching_agrees_with_reference(
        terms in prop::collection::vec((prop::sample::select(vec!["a", "b", "c.d"]), any::<bool>(), "[xy,=\\\\]{0,2}"), 0..4),
        present in prop::collection::btree_map(prop::sample::select(vec!["a", "b", "c.d"]), "[xy,=\\\\]{0,2}", 0..3),
    ) {
        let text = terms
            .iter()
            .map(|(f, eq, v)| format!("{f}{}{}", if *eq { "==" } else { "!=" }, escape_value(v)))
            .collect::<Vec<_>>()
            .join(",");
        let sel = FieldSelector::parse(&text).unwrap();
        let expected = terms.iter().all(|(f, eq, v)| {
            let have = present.get(*f).map(String::as_str).unwrap_or("");
            (have == v) == *eq
        });
        let got = sel.matches(|path| present.get(path).cloned());
        prop_assert_eq!(got, expected, "selector {}", text);
    }
}
