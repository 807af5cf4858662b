mod line;

pub const WIDTH: usize = 80;
