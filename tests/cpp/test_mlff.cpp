// C++17 test of the header-only wrapper include/mlff.hpp. tests/ffi.rs writes the
// inputs (see tests/c/test_mlff.c for the folder layout) and runs:
//
//   test_mlff_cpp DIR CUDA_AVAILABLE
//
// Exit status 0 only when every check passed.
#include "mlff.hpp"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

static_assert(!std::is_copy_constructible_v<mlff::Model>, "mlff::Model must not be copyable");
static_assert(!std::is_copy_assignable_v<mlff::Model>, "mlff::Model must not be copyable");
static_assert(std::is_nothrow_move_constructible_v<mlff::Model>, "mlff::Model must be movable");
static_assert(std::is_nothrow_move_assignable_v<mlff::Model>, "mlff::Model must be movable");
static_assert(std::is_base_of_v<std::runtime_error, mlff::Error>, "mlff::Error is a std::runtime_error");

namespace {

int failures = 0;
int checks = 0;

void check(bool ok, const std::string &what, int line) {
    ++checks;
    if (!ok) {
        ++failures;
        std::cerr << "FAIL line " << line << ": " << what << "\n";
    }
}
#define CHECK(cond, what) check((cond), (what), __LINE__)

// `body` throws mlff::Error with `status` and a non-empty message containing `needle`.
template <typename Body>
void expect_error(Body body, MlffStatus status, const std::string &needle, int line) {
    try {
        body();
        check(false, "no exception, expected status " + std::to_string(status), line);
    } catch (const mlff::Error &error) {
        check(error.status() == status,
              "status " + std::to_string(error.status()) + ", expected " + std::to_string(status) + ": " + error.what(),
              line);
        check(std::strlen(error.what()) > 0, "empty message", line);
        check(needle.empty() || std::string(error.what()).find(needle) != std::string::npos,
              std::string("message \"") + error.what() + "\" does not mention \"" + needle + "\"", line);
    }
}
#define EXPECT_ERROR(body, status, needle) expect_error([&] { body; }, (status), (needle), __LINE__)

struct Case {
    std::string name;
    mlff::System system;
    double energy = 0.0;
    std::vector<double> forces, virial, atom_energies, atom_virials;
};

struct Cases {
    double cutoff = 0.0;
    unsigned num_layers = 0;
    std::vector<std::int32_t> supported;
    std::vector<std::string> warning_codes;
    std::vector<Case> cases;
};

[[noreturn]] void malformed(const std::string &what) {
    std::cerr << "malformed cases file: expected " << what << "\n";
    std::exit(2);
}

void keyword(std::istream &in, const std::string &expected) {
    std::string word;
    if (!(in >> word) || word != expected) malformed(expected);
}

template <typename T>
T value(std::istream &in) {
    std::string word;
    if (!(in >> word)) malformed("a value");
    if constexpr (std::is_floating_point_v<T>) {
        char *end = nullptr;
        const double parsed = std::strtod(word.c_str(), &end);
        if (end == word.c_str() || *end != '\0') malformed("a number");
        return parsed;
    } else {
        return static_cast<T>(std::stoll(word));
    }
}

std::vector<double> array(std::istream &in, const std::string &name) {
    keyword(in, name);
    std::vector<double> values(value<std::size_t>(in));
    for (double &v : values) v = value<double>(in);
    return values;
}

Cases load_cases(const std::string &path) {
    std::ifstream in(path);
    if (!in) malformed("a readable " + path);
    Cases cases;
    keyword(in, "mlff-cases-1");
    keyword(in, "cutoff");
    cases.cutoff = value<double>(in);
    keyword(in, "num_layers");
    cases.num_layers = value<unsigned>(in);
    keyword(in, "supported");
    cases.supported.resize(value<std::size_t>(in));
    for (auto &z : cases.supported) z = value<std::int32_t>(in);
    keyword(in, "warnings");
    cases.warning_codes.resize(value<std::size_t>(in));
    for (auto &code : cases.warning_codes) in >> code;
    keyword(in, "cases");
    cases.cases.resize(value<std::size_t>(in));
    for (Case &c : cases.cases) {
        keyword(in, "case");
        in >> c.name;
        keyword(in, "n_atoms");
        const auto n_atoms = value<std::size_t>(in);
        keyword(in, "n_local");
        c.system.n_local = value<std::size_t>(in);
        keyword(in, "pbc");
        for (bool &p : c.system.pbc) p = value<int>(in) != 0;
        const auto cell = array(in, "cell");
        if (cell.size() == 9) {
            std::array<double, 9> rows{};
            std::copy(cell.begin(), cell.end(), rows.begin());
            c.system.cell = rows;
        }
        keyword(in, "numbers");
        c.system.numbers.resize(value<std::size_t>(in));
        for (auto &z : c.system.numbers) z = value<std::int32_t>(in);
        if (c.system.numbers.size() != n_atoms) malformed("n_atoms numbers");
        c.system.positions = array(in, "positions");
        keyword(in, "energy");
        c.energy = value<double>(in);
        c.forces = array(in, "forces");
        c.virial = array(in, "virial");
        c.atom_energies = array(in, "atom_energies");
        c.atom_virials = array(in, "atom_virials");
        keyword(in, "tolerance");
        value<double>(in);
        value<double>(in);
    }
    return cases;
}

bool same_bits(const std::vector<double> &a, const std::vector<double> &b) {
    return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(double)) == 0);
}

bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof(double)) == 0; }

mlff::Options f64_cpu() {
    mlff::Options options;
    options.device = MLFF_DEVICE_CPU;
    options.precision = MLFF_PRECISION_F64;
    return options;
}

void check_errors(const std::string &dir, bool cuda_available) {
    EXPECT_ERROR(mlff::Model(dir + "/does-not-exist.safetensors"), MLFF_ERR_IO, "does-not-exist");
    EXPECT_ERROR(mlff::Model(dir + "/garbage.bin"), MLFF_ERR_MODEL_FORMAT, "");
    EXPECT_ERROR(mlff::Model(dir + "/truncated.safetensors"), MLFF_ERR_MODEL_FORMAT, "");
    mlff::Options bad;
    bad.device = 17;
    EXPECT_ERROR(mlff::Model(dir + "/model.safetensors", bad), MLFF_ERR_INVALID_ARGUMENT, "device");
    bad = mlff::Options();
    bad.precision = -3;
    EXPECT_ERROR(mlff::Model(dir + "/model.safetensors", bad), MLFF_ERR_INVALID_ARGUMENT, "precision");
    if (!cuda_available) {
        mlff::Options cuda;
        cuda.device = MLFF_DEVICE_CUDA;
        EXPECT_ERROR(mlff::Model(dir + "/model.safetensors", cuda), MLFF_ERR_DEVICE, "");
    }
}

void check_model(const std::string &dir, const Cases &cases) {
    mlff::Model model(dir + "/model.safetensors", f64_cpu());
    CHECK(model.get() != nullptr, "no handle");
    CHECK(model.cutoff() == cases.cutoff, "cutoff");
    CHECK(model.num_layers() == cases.num_layers, "num_layers");
    CHECK(model.device() == MLFF_DEVICE_CPU, "device");
    CHECK(model.precision() == MLFF_PRECISION_F64, "precision");
    CHECK(!model.engine_description().empty(), "engine description");
    CHECK(model.supported_elements() == cases.supported, "supported elements");
    const auto warnings = model.warnings();
    CHECK(warnings.size() == cases.warning_codes.size(), "warning count");
    for (std::size_t i = 0; i < warnings.size() && i < cases.warning_codes.size(); ++i) {
        CHECK(warnings[i].code == cases.warning_codes[i], "warning code " + warnings[i].code);
        CHECK(!warnings[i].message.empty(), "warning message");
    }

    // Values through the wrapper equal the Rust API's, bit for bit.
    for (const Case &c : cases.cases) {
        const mlff::Results r = model.compute(c.system, mlff::Request::all());
        CHECK(same_bits(r.energy, c.energy), c.name + ": energy");
        CHECK(same_bits(r.forces, c.forces), c.name + ": forces");
        CHECK(same_bits(r.virial, c.virial), c.name + ": virial");
        CHECK(same_bits(r.atom_energies, c.atom_energies), c.name + ": atom energies");
        CHECK(same_bits(r.atom_virials, c.atom_virials), c.name + ": atom virials");
        const mlff::Results e = model.compute(c.system, mlff::Request::energy_only());
        CHECK(same_bits(e.energy, c.energy) && e.forces.empty() && e.virial.empty(), c.name + ": energy only");
        if (!c.system.cell && c.system.n_local == c.system.numbers.size()) {
            const mlff::Results m = model.compute(c.system.numbers, c.system.positions);
            CHECK(same_bits(m.energy, c.energy) && same_bits(m.forces, c.forces), c.name + ": molecule overload");
        }
    }

    // Batch: equal to single calls.
    std::vector<mlff::System> systems;
    for (std::size_t k = 0; k < 64 && !cases.cases.empty(); ++k) {
        mlff::System s = cases.cases[k % cases.cases.size()].system;
        for (std::size_t i = 0; i < s.positions.size(); ++i) {
            s.positions[i] += 0.001 * static_cast<double>((k + 3 * i) % 7);
        }
        systems.push_back(s);
    }
    const auto batch = model.compute_batch(systems, mlff::Request::all());
    CHECK(batch.size() == systems.size(), "batch size");
    for (std::size_t k = 0; k < batch.size(); ++k) {
        const mlff::Results single = model.compute(systems[k], mlff::Request::all());
        CHECK(same_bits(batch[k].energy, single.energy) && same_bits(batch[k].forces, single.forces) &&
                  same_bits(batch[k].virial, single.virial) && same_bits(batch[k].atom_virials, single.atom_virials),
              "batch result " + std::to_string(k) + " differs from the single call");
    }
    CHECK(model.compute_batch({}).empty(), "empty batch");

    // Errors from compute carry the library's message.
    mlff::System bad;
    bad.numbers = {6, 1};
    bad.positions = {0, 0, 0, 1, 0, 0};
    bad.numbers[1] = 150;
    EXPECT_ERROR(model.compute(bad), MLFF_ERR_INVALID_ARGUMENT, "atom 1");
    bad.numbers[1] = 1;
    bad.positions[4] = std::nan("");
    EXPECT_ERROR(model.compute(bad), MLFF_ERR_INVALID_ARGUMENT, "atom 1");
    bad.positions.pop_back();
    EXPECT_ERROR(model.compute(bad), MLFF_ERR_INVALID_ARGUMENT, "position");
    bad.positions = {0, 0, 0, 1, 0, 0};
    bad.n_local = 3;
    EXPECT_ERROR(model.compute(bad), MLFF_ERR_INVALID_ARGUMENT, "n_local");
    std::vector<mlff::System> batch_with_bad(3, bad);
    batch_with_bad[0].n_local = 2;
    batch_with_bad[2].n_local = 2;
    EXPECT_ERROR(model.compute_batch(batch_with_bad), MLFF_ERR_INVALID_ARGUMENT, "1");
    // The raw overload: a system whose arrays are NULL.
    MlffSystem raw{};
    raw.n_atoms = 2;
    raw.n_local = 2;
    MlffResults raw_results{};
    EXPECT_ERROR(model.compute(raw, raw_results), MLFF_ERR_NULL_POINTER, "numbers");

    // Moves transfer the handle; a moved-from model throws instead of crashing.
    mlff::Model moved(std::move(model));
    CHECK(moved.get() != nullptr && model.get() == nullptr, "move constructor");
    EXPECT_ERROR(model.cutoff(), MLFF_ERR_NULL_POINTER, "moved");
    EXPECT_ERROR(model.compute(bad), MLFF_ERR_NULL_POINTER, "model");
    mlff::Model other(dir + "/model.safetensors", f64_cpu());
    other = std::move(moved);
    CHECK(other.get() != nullptr && moved.get() == nullptr, "move assignment");
    CHECK(other.cutoff() == cases.cutoff, "cutoff after moves");
}

} // namespace

int main(int argc, char **argv) {
    if (argc != 3) {
        std::cerr << "usage: " << argv[0] << " DIR CUDA_AVAILABLE\n";
        return 2;
    }
    const std::string dir = argv[1];
    const bool cuda_available = std::atoi(argv[2]) != 0;
    CHECK(mlff::abi_version() == MLFF_ABI_VERSION, "ABI version");
    CHECK(!mlff::version().empty(), "version");
    const Cases cases = load_cases(dir + "/cases.txt");
    check_errors(dir, cuda_available);
    check_model(dir, cases);
    if (failures == 0) {
        std::cout << "test_mlff_cpp: all " << checks << " checks passed\n";
        return 0;
    }
    std::cout << "test_mlff_cpp: " << failures << " of " << checks << " checks FAILED\n";
    return 1;
}
