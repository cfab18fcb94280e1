use super::*;
use crate::dump::{DumpOptions, dump};
use crate::{Document, Options, load, resolve};

fn docs(text: &str) -> Vec<Document> {
    vec![load("kong.yaml", text.as_bytes(), &|_| None).unwrap()]
}

fn state(text: &str, options: &Options) -> State {
    resolve(&docs(text), &gatehouse_plugins::registry(), options).unwrap()
}

const FILE: &str = r#"
_format_version: "3.0"
services:
  - name: svc
    url: http://example.com/anything
    routes:
      - name: r1
        paths: ["/one"]
        plugins:
          - name: request-termination
            config: {status_code: 418}
      - paths: ["/unnamed"]
        id: 1b0a7b3c-8a8b-4a57-9a8e-2b6f1e0c0d01
consumers:
  - username: alice
    plugins:
      - name: request-termination
        config: {status_code: 403}
plugins:
  - name: request-termination
    route: r1
    consumer: alice
"#;

#[test]
fn an_empty_node_gets_every_entity_created_dependencies_first() {
    let target = state(FILE, &Options::default());
    let plan = Plan::new(&target, &State::default());
    let lines: Vec<String> = plan.changes.iter().map(Change::describe).collect();
    assert_eq!(
        lines,
        [
            "creating service svc",
            "creating route r1",
            "creating route 1b0a7b3c-8a8b-4a57-9a8e-2b6f1e0c0d01",
            "creating consumer alice",
            "creating plugin request-termination for route r1",
            "creating plugin request-termination for consumer alice",
            "creating plugin request-termination for route r1 and consumer alice",
        ]
    );
    assert_eq!(plan.phases().len(), 4, "service, routes, consumer, plugins");
    assert_eq!(
        plan.counts().summary(),
        "Summary:\n  Created: 7\n  Updated: 0\n  Deleted: 0"
    );
    // Names give stable ids: the same file resolves to the same ids on every run.
    let again = state(FILE, &Options::default());
    assert_eq!(again.services[0].id, target.services[0].id);
    assert_eq!(again.plugins[2].id, target.plugins[2].id);
}

#[test]
fn a_dump_resolves_back_to_the_same_state_with_an_empty_plan() {
    let node = state(FILE, &Options::default());
    let file = dump(&node, &DumpOptions::default());
    let text = yaml_serde::to_string(&file).unwrap();
    // Named entities lose their ids; the unnamed route keeps its own.
    assert!(!text.contains(&node.services[0].id.to_string()), "{text}");
    assert!(
        text.contains("1b0a7b3c-8a8b-4a57-9a8e-2b6f1e0c0d01"),
        "{text}"
    );
    let options = Options {
        known: node.known(),
        ..Options::default()
    };
    let back = state(&text, &options);
    let plan = Plan::new(&back, &node);
    assert!(plan.changes.is_empty(), "{:#?}\n{text}", plan.changes);
}

#[test]
fn names_find_the_nodes_ids_and_changes_are_updates_and_deletes() {
    let mut node = state(FILE, &Options::default());
    // The node made the service itself, under another id, with another host.
    let node_id = uuid::Uuid::new_v4();
    let old_id = node.services[0].id;
    node.services[0].id = node_id;
    node.services[0].host = "old.example.com".into();
    for r in &mut node.routes {
        r.service = Some(gatehouse_core::gateway::ForeignKey { id: node_id });
    }
    let mut extra = node.consumers[0].clone();
    extra.id = uuid::Uuid::new_v4();
    extra.username = Some("bob".into());
    node.consumers.push(extra);

    let options = Options {
        known: node.known(),
        ..Options::default()
    };
    let target = state(FILE, &options);
    assert_eq!(target.services[0].id, node_id);
    assert_ne!(node_id, old_id);
    let plan = Plan::new(&target, &node);
    let lines: Vec<String> = plan.changes.iter().map(Change::describe).collect();
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert_eq!(lines[0], "deleting consumer bob");
    assert!(
        lines[1].starts_with("updating service svc  {\n"),
        "{}",
        lines[1]
    );
    assert!(
        lines[1].contains("\n-   \"host\": \"old.example.com\",\n"),
        "{}",
        lines[1]
    );
    assert!(
        lines[1].contains("\n+   \"host\": \"example.com\",\n"),
        "{}",
        lines[1]
    );
    assert!(lines[1].ends_with("\n }"), "{}", lines[1]);
}

#[test]
fn select_tags_tag_the_files_entities_and_limit_what_the_node_side_holds() {
    let tagged = format!("{FILE}_info:\n  select_tags: [team-a]\n");
    let target = state(&tagged, &Options::default());
    assert!(
        target
            .plugins
            .iter()
            .all(|p| p.tags.as_deref() == Some(&["team-a".to_owned()][..]))
    );
    let mut node = target.clone();
    let mut other = node.services[0].clone();
    other.id = uuid::Uuid::new_v4();
    other.name = Some("not-mine".into());
    other.tags = None;
    node.services.push(other);
    node.select(&target.select_tags, false);
    assert!(Plan::new(&target, &node).changes.is_empty());

    let flag = Options {
        select_tags: vec!["team-b".into()],
        ..Options::default()
    };
    let errs = resolve(&docs(&tagged), &gatehouse_plugins::registry(), &flag).unwrap_err();
    assert!(
        errs[0].to_string().contains("differ from --select-tag"),
        "{}",
        errs[0]
    );
}

#[test]
fn default_lookup_tags_find_services_kept_on_the_node() {
    let team_b = r#"
_format_version: "3.0"
_info:
  select_tags: [team-b]
  default_lookup_tags:
    services: [shared]
routes:
  - name: route-b
    paths: ["/b"]
    service: {name: svc}
"#;
    // Offline the service cannot be checked, and is taken on trust.
    let offline = state(team_b, &Options::default());
    assert_eq!(
        offline.lookup_tags,
        vec![(EntityKind::Service, vec!["shared".to_owned()])]
    );

    // On a node that has it with the tag, the route points at the node's service.
    let mut node = state(FILE, &Options::default());
    node.services[0].tags = Some(vec!["shared".into()]);
    let options = Options {
        lookup: Some(node.lookup(&offline.lookup_tags)),
        ..Options::default()
    };
    let target = state(team_b, &options);
    assert_eq!(
        target.routes[0].service.map(|f| f.id),
        Some(node.services[0].id)
    );
    // By id too.
    let by_id = team_b.replace("{name: svc}", &format!("{{id: {}}}", node.services[0].id));
    let target = state(&by_id, &options);
    assert_eq!(
        target.routes[0].service.map(|f| f.id),
        Some(node.services[0].id)
    );

    // Without the tag it is not found, and the problem says where it was looked for.
    node.services[0].tags = None;
    let options = Options {
        lookup: Some(node.lookup(&offline.lookup_tags)),
        ..Options::default()
    };
    let errs = resolve(&docs(team_b), &gatehouse_plugins::registry(), &options).unwrap_err();
    assert!(
        errs[0]
            .to_string()
            .contains("no service 'svc' in the files, nor on the node with the tags [\"shared\"]"),
        "{}",
        errs[0]
    );
    // And a reference of a kind without lookup tags still must be in the files.
    let errs = resolve(
        &docs(&team_b.replace("services: [shared]", "routes: [shared]")),
        &gatehouse_plugins::registry(),
        &options,
    )
    .unwrap_err();
    assert!(
        errs[0]
            .to_string()
            .contains("no service 'svc' in the files"),
        "{}",
        errs[0]
    );
}
