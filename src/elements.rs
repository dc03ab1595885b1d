//! Chemical element symbols, indexed by atomic number.

const SYMBOLS: [&str; 119] = [
    "X", "H", "He", "Li", "Be", "B", "C", "N", "O", "F", "Ne", "Na", "Mg", "Al", "Si", "P", "S",
    "Cl", "Ar", "K", "Ca", "Sc", "Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Zn", "Ga", "Ge",
    "As", "Se", "Br", "Kr", "Rb", "Sr", "Y", "Zr", "Nb", "Mo", "Tc", "Ru", "Rh", "Pd", "Ag", "Cd",
    "In", "Sn", "Sb", "Te", "I", "Xe", "Cs", "Ba", "La", "Ce", "Pr", "Nd", "Pm", "Sm", "Eu", "Gd",
    "Tb", "Dy", "Ho", "Er", "Tm", "Yb", "Lu", "Hf", "Ta", "W", "Re", "Os", "Ir", "Pt", "Au", "Hg",
    "Tl", "Pb", "Bi", "Po", "At", "Rn", "Fr", "Ra", "Ac", "Th", "Pa", "U", "Np", "Pu", "Am", "Cm",
    "Bk", "Cf", "Es", "Fm", "Md", "No", "Lr", "Rf", "Db", "Sg", "Bh", "Hs", "Mt", "Ds", "Rg", "Cn",
    "Nh", "Fl", "Mc", "Lv", "Ts", "Og",
];

/// Atomic number of an element symbol (case-sensitive, as in "He"), or `None`.
pub fn atomic_number(symbol: &str) -> Option<u32> {
    SYMBOLS
        .iter()
        .skip(1)
        .position(|s| *s == symbol)
        .map(|i| i as u32 + 1)
}

/// Symbol of an atomic number in 1..=118, or `None`.
pub fn symbol(number: u32) -> Option<&'static str> {
    if (1..=118).contains(&number) {
        Some(SYMBOLS[number as usize])
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn round_trip_all_elements() {
        for z in 1..=118u32 {
            assert_eq!(atomic_number(symbol(z).unwrap()), Some(z));
        }
        assert_eq!(atomic_number("O"), Some(8));
        assert_eq!(atomic_number("o"), None);
        assert_eq!(symbol(0), None);
        assert_eq!(symbol(119), None);
    }
}
