pub fn area(r: f64) -> f64 {
    super::PI * r * r
}
