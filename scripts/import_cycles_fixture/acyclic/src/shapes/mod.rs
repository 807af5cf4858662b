mod circle;

pub use circle::area;

#[cfg(test)]
mod tests {
    use crate::units::PI;
}
