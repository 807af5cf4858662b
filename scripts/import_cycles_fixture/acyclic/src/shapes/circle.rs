use crate::units::PI;

pub fn area(r: f64) -> f64 {
    PI * r * r
}

#[cfg(test)]
mod tests {
    use super::super::*;
}
