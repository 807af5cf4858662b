pub const PI: f64 = 3.14;
