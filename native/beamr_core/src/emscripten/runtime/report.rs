//! The reports of uncaught exceptions: the `what()` of a `std::exception`, else the type's
//! name.

use wasmer::{AsStoreMut, AsStoreRef, Value};

use crate::emscripten::host::{integer, Host};
use crate::emscripten::unwind::Thrown;

use super::{Runtime, MAX_MESSAGE, MAX_TYPE_INFOS};

impl Runtime {
    /// What a call's error reports for a throw nothing caught: the exception's `what()`
    /// when it is a `std::exception`, else its type's name.
    pub fn describe(
        &self,
        store: &mut impl AsStoreMut,
        host: &impl Host,
        thrown: &Thrown,
    ) -> String {
        let thrown = match thrown {
            Thrown::Cxx(0) => return "throw; with no exception being handled".to_string(),
            Thrown::Cxx(thrown) => *thrown,
            thrown => return thrown.to_string(),
        };
        let ty = self
            .header(thrown)
            .and_then(|header| self.read_pointer(store, header.wrapping_add(self.type_field())))
            .ok();
        self.describe_object(store, host, thrown, ty)
    }

    /// The same for a wasm exception nothing caught (builds with `-fwasm-exceptions`), when
    /// it is libc++abi's: its payload is the address of the unwind header that ends the
    /// exception's `__cxa_exception`, which says so in its first eight bytes ("CLNGC++\0").
    /// `None` for any other exception.
    pub fn describe_wasm_exception(
        &self,
        store: &mut impl AsStoreMut,
        host: &impl Host,
        payload: &[Value],
    ) -> Option<String> {
        const CXX_EXCEPTION_CLASS: u64 = 0x434C_4E47_432B_2B00;
        let [value] = payload else { return None };
        let unwind_header = integer(value);
        let mut class = [0u8; 8];
        self.read(store, unwind_header, &mut class).ok()?;
        if u64::from_le_bytes(class) != CXX_EXCEPTION_CLASS {
            return None;
        }
        // The type is 48 bytes before the unwind header in wasm32, 80 in memory64 (LP64 adds
        // two words in front). The object follows the unwind header, 32 bytes in the libc++abi
        // of Emscripten 3.1 (16 in memory64 builds where it is not padded): a polymorphic
        // object's vtable names its type, which tells them apart.
        let type_before = if self.pointer == 4 { 48 } else { 80 };
        let ty = self
            .read_pointer(store, unwind_header.checked_sub(type_before)?)
            .ok();
        let thrown = [32, 16]
            .map(|header_size| unwind_header.wrapping_add(header_size))
            .into_iter()
            .find(|&thrown| ty.is_some() && self.dynamic_type(store, thrown) == ty)
            .unwrap_or(unwind_header.wrapping_add(32));
        Some(self.describe_object(store, host, thrown, ty))
    }

    /// The type info that the vtable of a polymorphic object at `object` names.
    pub(super) fn dynamic_type(&self, store: &impl AsStoreRef, object: u64) -> Option<u64> {
        let vtable = self.read_pointer(store, object).ok()?;
        self.read_pointer(store, vtable.checked_sub(self.pointer)?)
            .ok()
    }

    /// The report of the object at `thrown`, of type `ty` (if it could be read).
    pub(super) fn describe_object(
        &self,
        store: &mut impl AsStoreMut,
        host: &impl Host,
        thrown: u64,
        ty: Option<u64>,
    ) -> String {
        if let Some(message) = ty.and_then(|ty| self.what(store, host, thrown, ty)) {
            return message;
        }
        match ty.and_then(|ty| self.type_name(store, ty)) {
            Some(name) => format!("uncaught C++ exception of type {name}"),
            None => "uncaught C++ exception".to_string(),
        }
    }

    /// `std::exception::what()` of `thrown`, of type `ty`, when that type derives from
    /// `std::exception` (found by walking the type infos' base classes by name).
    pub(super) fn what(
        &self,
        store: &mut impl AsStoreMut,
        host: &impl Host,
        thrown: u64,
        ty: u64,
    ) -> Option<String> {
        let offset = self.std_exception_offset(store, ty, &mut { MAX_TYPE_INFOS });
        let offset = offset?;
        let object = thrown.checked_add(offset)?;
        let vtable = self.read_pointer(store, object).ok()?;
        // std::exception's virtual functions: two destructors, then what().
        let what = self
            .read_pointer(store, vtable.checked_add(2 * self.pointer)?)
            .ok()?;
        let what = self.table_function(store, what).ok()?;
        let message = self.call(store, host, &what, &[object]).ok()?;
        self.c_string(store, message)
    }

    /// Where the `std::exception` inside an object of type `ty` starts, if it has one
    /// (public, non-virtual bases only); `budget` bounds the type infos read.
    pub(super) fn std_exception_offset(
        &self,
        store: &impl AsStoreRef,
        ty: u64,
        budget: &mut u32,
    ) -> Option<u64> {
        *budget = budget.checked_sub(1)?;
        if self.type_name(store, ty)? == "St9exception" {
            return Some(0);
        }
        // A type info's own class tells where its bases are: its vtable's RTTI names it.
        let vtable = self.read_pointer(store, ty).ok()?;
        let class = self
            .read_pointer(store, vtable.checked_sub(self.pointer)?)
            .ok()?;
        let bases = ty.checked_add(2 * self.pointer)?;
        match self.type_name(store, class)?.as_str() {
            "N10__cxxabiv120__si_class_type_infoE" => {
                self.std_exception_offset(store, self.read_pointer(store, bases).ok()?, budget)
            }
            "N10__cxxabiv121__vmi_class_type_infoE" => {
                const VIRTUAL: u64 = 1;
                const PUBLIC: u64 = 2;
                let mut count = [0u8; 4];
                self.read(store, bases.wrapping_add(4), &mut count).ok()?;
                for i in 0..u64::from(u32::from_le_bytes(count)).min(u64::from(*budget)) {
                    let entry = bases.wrapping_add(8 + i * 2 * self.pointer);
                    let base = self.read_pointer(store, entry).ok()?;
                    let flags = self
                        .read_pointer(store, entry.wrapping_add(self.pointer))
                        .ok()?;
                    if flags & VIRTUAL != 0 || flags & PUBLIC == 0 {
                        continue;
                    }
                    // The offset is the flags' signed long shifted right by 8.
                    let offset = if self.pointer == 4 {
                        (flags as u32 as i32 >> 8) as i64
                    } else {
                        flags as i64 >> 8
                    };
                    if let Some(inner) = self.std_exception_offset(store, base, budget) {
                        return Some((offset as u64).wrapping_add(inner));
                    }
                }
                None
            }
            _ => None,
        }
    }

    /// The mangled name in type info `ty` (its second field).
    pub(super) fn type_name(&self, store: &impl AsStoreRef, ty: u64) -> Option<String> {
        let name = self
            .read_pointer(store, ty.checked_add(self.pointer)?)
            .ok()?;
        self.c_string(store, name)
    }

    /// The NUL-terminated string at `address`, at most `MAX_MESSAGE` bytes of it.
    pub(super) fn c_string(&self, store: &impl AsStoreRef, address: u64) -> Option<String> {
        let size = self.memory.as_ref()?.view(store).data_size();
        let len = size.checked_sub(address)?.min(MAX_MESSAGE);
        let mut bytes = vec![0; len as usize];
        self.read(store, address, &mut bytes).ok()?;
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        Some(String::from_utf8_lossy(&bytes[..end]).into_owned())
    }
}
