//! HyperBEAM signature strings: `"(" ++ Params ++ ")" ++ Results`, one char per type
//! (`i` i32, `I` i64, `f` f32, `F` f64, `v` v128, `r` funcref, `e` externref).

use wasmer::{FunctionType, Type};

/// The signature character of one value type.
pub fn type_char(ty: Type) -> char {
    match ty {
        Type::I32 => 'i',
        Type::I64 => 'I',
        Type::F32 => 'f',
        Type::F64 => 'F',
        Type::V128 => 'v',
        Type::FuncRef => 'r',
        // exnref never crosses the host boundary; it shares externref's letter.
        Type::ExternRef | Type::ExceptionRef => 'e',
    }
}

/// `"(iI)F"` for a function type `[i32 i64] -> [f64]`.
pub fn signature(ty: &FunctionType) -> String {
    let params: String = ty.params().iter().map(|t| type_char(*t)).collect();
    let results: String = ty.results().iter().map(|t| type_char(*t)).collect();
    format!("({params}){results}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_params_and_results() {
        let ty = FunctionType::new(vec![Type::I32, Type::I64], vec![Type::F64]);
        assert_eq!(signature(&ty), "(iI)F");
        let empty = FunctionType::new(vec![], vec![]);
        assert_eq!(signature(&empty), "()");
        let all = FunctionType::new(
            vec![Type::F32, Type::V128, Type::FuncRef, Type::ExternRef],
            vec![Type::I32, Type::I64],
        );
        assert_eq!(signature(&all), "(fvre)iI");
    }
}
