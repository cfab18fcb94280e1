//! Where in a file a path (`services[0].routes[1].paths`) is: the line of each node, read
//! from the YAML parser's events. Computed only when a file has problems to report.

use std::collections::HashMap;
use yaml_rust2::Event;
use yaml_rust2::parser::{MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// One open collection while walking the events.
enum Frame {
    /// A mapping: its path, and the key whose value comes next (None: a key comes next).
    Map(String, Option<String>),
    /// A sequence: its path and the index of the next item.
    Seq(String, usize),
}

#[derive(Default)]
struct Walk {
    stack: Vec<Frame>,
    lines: HashMap<String, usize>,
    /// The line of the key whose value comes next.
    key_line: Option<usize>,
}

impl Walk {
    /// The path of the node that starts now, and advances its parent.
    fn next_path(&mut self) -> Option<String> {
        match self.stack.last_mut()? {
            Frame::Map(path, key) => {
                let key = key.take()?;
                Some(if path.is_empty() {
                    key
                } else {
                    format!("{path}.{key}")
                })
            }
            Frame::Seq(path, index) => {
                let at = format!("{path}[{index}]");
                *index += 1;
                Some(at)
            }
        }
    }

    fn node(&mut self, line: usize) -> Option<String> {
        let key_line = self.key_line.take();
        let path = self.next_path()?;
        // A mapping's value is found on its key's line (`paths:`); an item on its own.
        self.lines
            .entry(path.clone())
            .or_insert(key_line.unwrap_or(line));
        Some(path)
    }
}

impl MarkedEventReceiver for Walk {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let line = mark.line();
        match ev {
            Event::Scalar(value, ..) => {
                if let Some(Frame::Map(_, key @ None)) = self.stack.last_mut() {
                    *key = Some(value);
                    self.key_line = Some(line);
                } else {
                    self.node(line);
                }
            }
            Event::Alias(_) => {
                self.node(line);
            }
            Event::MappingStart(..) => {
                let path = if self.stack.is_empty() {
                    Some(String::new())
                } else {
                    self.node(line)
                };
                self.stack.push(Frame::Map(path.unwrap_or_default(), None));
            }
            Event::SequenceStart(..) => {
                let path = if self.stack.is_empty() {
                    Some(String::new())
                } else {
                    self.node(line)
                };
                self.stack.push(Frame::Seq(path.unwrap_or_default(), 0));
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

/// The line (1-based) of every node of `text`'s first document, by path.
pub fn lines(text: &str) -> HashMap<String, usize> {
    let mut walk = Walk::default();
    let mut parser = Parser::new_from_str(text);
    // A file that parsed as YAML parses here too; if not, there are no lines to give.
    let _ = parser.load(&mut walk, false);
    walk.lines
}

/// The line of `path`, or of the nearest node above it.
pub fn line_of(lines: &HashMap<String, usize>, path: &str) -> Option<usize> {
    let mut p = path;
    loop {
        if let Some(l) = lines.get(p) {
            return Some(*l);
        }
        let cut = p.rfind(['.', '['])?;
        p = &p[..cut];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_find_their_lines_in_block_and_flow_styles() {
        let text = "_format_version: \"3.0\"\nservices:\n  - name: a\n    host: h\n    routes:\n      - name: r\n        paths: [\"/x\", y]\n      - {name: q, paths: [z]}\n";
        let l = lines(text);
        assert_eq!(l.get("services"), Some(&2));
        assert_eq!(l.get("services[0]"), Some(&3));
        assert_eq!(l.get("services[0].routes[0]"), Some(&6));
        assert_eq!(l.get("services[0].routes[0].paths"), Some(&7));
        assert_eq!(l.get("services[0].routes[1]"), Some(&8));
        assert_eq!(line_of(&l, "services[0].routes[1].name"), Some(8));
        assert_eq!(line_of(&l, "services[0].routes[0].paths[1]"), Some(7));
        assert_eq!(line_of(&l, "services[0].nowhere"), Some(3));
        let json =
            "{\n  \"_format_version\": \"3.0\",\n  \"routes\": [\n    {\"name\": \"r\"}\n  ]\n}\n";
        assert_eq!(lines(json).get("routes[0]"), Some(&4));
    }
}
