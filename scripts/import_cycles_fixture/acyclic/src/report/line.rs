use super::WIDTH;

pub fn pad(text: &str) -> String {
    format!("{text:WIDTH$}")
}
