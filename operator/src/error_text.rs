//! An error as one line of text with its chain of causes, for statuses, Events and summaries.
//!
//! HTTP clients stop their own message at "error sending request"; why (a refused connection,
//! an untrusted certificate) is only in the sources below it, which `Display` leaves out.

/// `e` followed by each cause whose text it does not already contain, joined by `: `.
pub fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let part = c.to_string();
        if !part.is_empty() && !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Outer(std::io::Error, &'static str);

    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.1)
        }
    }

    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn causes_are_appended_once() {
        let cause = || std::io::Error::other("invalid peer certificate: UnknownIssuer");
        assert_eq!(
            with_causes(&Outer(cause(), "error sending request")),
            "error sending request: invalid peer certificate: UnknownIssuer"
        );
        // A message that already quotes its cause does not repeat it.
        assert_eq!(
            with_causes(&Outer(
                cause(),
                "failed: invalid peer certificate: UnknownIssuer"
            )),
            "failed: invalid peer certificate: UnknownIssuer"
        );
        assert_eq!(
            with_causes(&cause()),
            "invalid peer certificate: UnknownIssuer"
        );
    }
}
