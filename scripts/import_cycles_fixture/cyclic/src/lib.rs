mod shapes;

pub use shapes::area;
