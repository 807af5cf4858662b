mod circle;

pub use circle::area;

pub const PI: f64 = 3.14;
