/*
 * C test of the mlff C API (include/mlff.h), built with -std=c99 -Wall -Wextra -Werror.
 * tests/ffi.rs writes the inputs (a random model, broken files, and the cases with
 * the values the Rust API computed), builds this program and runs it:
 *
 *   test_mlff check DIR CUDA_AVAILABLE   every function and every error path; the
 *                                        cases through compute and compute_batch
 *   test_mlff fixtures MODEL CASES       the cases of CASES (converted public
 *                                        fixtures) within their tolerances
 *   test_mlff loop DIR N                 N computes plus periodic errors and
 *                                        create/destroy cycles (run under valgrind)
 *
 * DIR holds model.safetensors, garbage.bin, truncated.safetensors, empty.bin and
 * cases.txt. Exit status 0 only when every check passed.
 */
#define _POSIX_C_SOURCE 200809L

#include "mlff.h"

#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <time.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures = 0;
static int checks = 0;
static int report_errors = 0; /* fixtures mode prints the largest error of each array */

#define CHECK(cond, ...)                                                  \
    do {                                                                  \
        checks++;                                                         \
        if (!(cond)) {                                                    \
            failures++;                                                   \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);          \
            fprintf(stderr, __VA_ARGS__);                                 \
            fprintf(stderr, "\n   last error: \"%s\"\n", mlff_last_error()); \
        }                                                                 \
    } while (0)

static const char *status_name(MlffStatus status) {
    switch (status) {
    case MLFF_OK: return "MLFF_OK";
    case MLFF_ERR_NULL_POINTER: return "MLFF_ERR_NULL_POINTER";
    case MLFF_ERR_INVALID_ARGUMENT: return "MLFF_ERR_INVALID_ARGUMENT";
    case MLFF_ERR_IO: return "MLFF_ERR_IO";
    case MLFF_ERR_MODEL_FORMAT: return "MLFF_ERR_MODEL_FORMAT";
    case MLFF_ERR_DEVICE: return "MLFF_ERR_DEVICE";
    case MLFF_ERR_OUT_OF_MEMORY: return "MLFF_ERR_OUT_OF_MEMORY";
    case MLFF_ERR_INTERNAL: return "MLFF_ERR_INTERNAL";
    }
    return "(unknown status)";
}

/* The status is `expected`; the last error is non-empty after a failure, "" after success. */
static void expect_status(MlffStatus status, MlffStatus expected, const char *what, int line) {
    const char *message = mlff_last_error();
    checks++;
    if (status != expected) {
        failures++;
        fprintf(stderr, "FAIL line %d: %s returned %s, expected %s (last error: \"%s\")\n", line, what,
                status_name(status), status_name(expected), message ? message : "(NULL)");
        return;
    }
    checks++;
    if (message == NULL) {
        failures++;
        fprintf(stderr, "FAIL line %d: %s: mlff_last_error() is NULL\n", line, what);
    } else if (expected == MLFF_OK && message[0] != '\0') {
        failures++;
        fprintf(stderr, "FAIL line %d: %s succeeded but mlff_last_error() is \"%s\"\n", line, what, message);
    } else if (expected != MLFF_OK && message[0] == '\0') {
        failures++;
        fprintf(stderr, "FAIL line %d: %s failed with %s but mlff_last_error() is empty\n", line, what,
                status_name(status));
    }
}
#define EXPECT(call, expected) expect_status((call), (expected), #call, __LINE__)

static int last_error_contains(const char *needle) {
    return strstr(mlff_last_error(), needle) != NULL;
}

/* ------------------------------------------------------------------ cases */

typedef struct Case {
    char name[128];
    size_t n_atoms, n_local;
    int has_cell;
    double cell[9];
    bool pbc[3];
    int32_t *numbers;
    double *positions;
    double energy;
    size_t n_forces, n_virial, n_atom_energies, n_atom_virials; /* 0: not known */
    double *forces, virial[9], *atom_energies, *atom_virials;
    double energy_tolerance, array_tolerance; /* 0: bit for bit */
} Case;

typedef struct Cases {
    double cutoff;
    unsigned num_layers;
    size_t n_supported;
    int32_t supported[128];
    size_t n_warnings;
    char warning_codes[8][64];
    size_t n_cases;
    Case *cases;
} Cases;

static void *checked_calloc(size_t count, size_t size) {
    void *memory = calloc(count == 0 ? 1 : count, size);
    if (memory == NULL) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return memory;
}

static void read_failed(const char *what) {
    fprintf(stderr, "malformed cases file: expected %s\n", what);
    exit(2);
}

static void read_keyword(FILE *file, const char *keyword) {
    char word[128];
    if (fscanf(file, "%127s", word) != 1 || strcmp(word, keyword) != 0) {
        read_failed(keyword);
    }
}

static double read_double(FILE *file) {
    char word[64];
    char *end = NULL;
    double value;
    if (fscanf(file, "%63s", word) != 1) {
        read_failed("a number");
    }
    value = strtod(word, &end);
    if (end == word || *end != '\0') {
        read_failed("a number");
    }
    return value;
}

static size_t read_size(FILE *file) {
    unsigned long value;
    if (fscanf(file, "%lu", &value) != 1) {
        read_failed("a count");
    }
    return (size_t)value;
}

/* "KEYWORD COUNT v1 ... vCOUNT" into a new array (NULL when COUNT is 0). */
static double *read_array(FILE *file, const char *keyword, size_t *count) {
    double *values;
    size_t i;
    read_keyword(file, keyword);
    *count = read_size(file);
    if (*count == 0) {
        return NULL;
    }
    values = checked_calloc(*count, sizeof(double));
    for (i = 0; i < *count; i++) {
        values[i] = read_double(file);
    }
    return values;
}

static void load_cases(const char *path, Cases *cases) {
    FILE *file = fopen(path, "r");
    size_t i, k;
    if (file == NULL) {
        fprintf(stderr, "cannot open %s\n", path);
        exit(2);
    }
    memset(cases, 0, sizeof(*cases));
    read_keyword(file, "mlff-cases-1");
    read_keyword(file, "cutoff");
    cases->cutoff = read_double(file);
    read_keyword(file, "num_layers");
    cases->num_layers = (unsigned)read_size(file);
    read_keyword(file, "supported");
    cases->n_supported = read_size(file);
    if (cases->n_supported > 128) read_failed("at most 128 supported elements");
    for (i = 0; i < cases->n_supported; i++) {
        cases->supported[i] = (int32_t)read_size(file);
    }
    read_keyword(file, "warnings");
    cases->n_warnings = read_size(file);
    if (cases->n_warnings > 8) read_failed("at most 8 warnings");
    for (i = 0; i < cases->n_warnings; i++) {
        if (fscanf(file, "%63s", cases->warning_codes[i]) != 1) read_failed("a warning code");
    }
    read_keyword(file, "cases");
    cases->n_cases = read_size(file);
    cases->cases = checked_calloc(cases->n_cases, sizeof(Case));
    for (k = 0; k < cases->n_cases; k++) {
        Case *c = &cases->cases[k];
        size_t count;
        double *cell;
        read_keyword(file, "case");
        if (fscanf(file, "%127s", c->name) != 1) read_failed("a case name");
        read_keyword(file, "n_atoms");
        c->n_atoms = read_size(file);
        read_keyword(file, "n_local");
        c->n_local = read_size(file);
        read_keyword(file, "pbc");
        for (i = 0; i < 3; i++) c->pbc[i] = read_size(file) != 0;
        cell = read_array(file, "cell", &count);
        c->has_cell = count == 9;
        if (c->has_cell) memcpy(c->cell, cell, sizeof(c->cell));
        free(cell);
        read_keyword(file, "numbers");
        if (read_size(file) != c->n_atoms) read_failed("n_atoms numbers");
        c->numbers = checked_calloc(c->n_atoms, sizeof(int32_t));
        for (i = 0; i < c->n_atoms; i++) c->numbers[i] = (int32_t)read_size(file);
        c->positions = read_array(file, "positions", &count);
        if (count != 3 * c->n_atoms) read_failed("3 * n_atoms positions");
        read_keyword(file, "energy");
        c->energy = read_double(file);
        c->forces = read_array(file, "forces", &c->n_forces);
        cell = read_array(file, "virial", &c->n_virial);
        if (c->n_virial == 9) memcpy(c->virial, cell, sizeof(c->virial));
        free(cell);
        c->atom_energies = read_array(file, "atom_energies", &c->n_atom_energies);
        c->atom_virials = read_array(file, "atom_virials", &c->n_atom_virials);
        read_keyword(file, "tolerance");
        c->energy_tolerance = read_double(file);
        c->array_tolerance = read_double(file);
    }
    fclose(file);
}

static void free_cases(Cases *cases) {
    size_t k;
    for (k = 0; k < cases->n_cases; k++) {
        Case *c = &cases->cases[k];
        free(c->numbers);
        free(c->positions);
        free(c->forces);
        free(c->atom_energies);
        free(c->atom_virials);
    }
    free(cases->cases);
}

static MlffSystem case_system(const Case *c) {
    MlffSystem system;
    memset(&system, 0, sizeof(system));
    system.n_atoms = c->n_atoms;
    system.n_local = c->n_local;
    system.numbers = c->numbers;
    system.positions = c->positions;
    system.cell = c->has_cell ? c->cell : NULL;
    system.pbc[0] = c->pbc[0];
    system.pbc[1] = c->pbc[1];
    system.pbc[2] = c->pbc[2];
    return system;
}

/* Output buffers of one system, with all four arrays. */
typedef struct Buffers {
    size_t n_atoms;
    double *forces, virial[9], *atom_energies, *atom_virials;
    MlffResults results;
} Buffers;

static const double SENTINEL = 12345.678;

static void buffers_init(Buffers *b, size_t n_atoms) {
    size_t i;
    b->n_atoms = n_atoms;
    b->forces = checked_calloc(3 * n_atoms, sizeof(double));
    b->atom_energies = checked_calloc(n_atoms, sizeof(double));
    b->atom_virials = checked_calloc(9 * n_atoms, sizeof(double));
    for (i = 0; i < 3 * n_atoms; i++) b->forces[i] = SENTINEL;
    for (i = 0; i < n_atoms; i++) b->atom_energies[i] = SENTINEL;
    for (i = 0; i < 9 * n_atoms; i++) b->atom_virials[i] = SENTINEL;
    for (i = 0; i < 9; i++) b->virial[i] = SENTINEL;
    b->results.energy = SENTINEL;
    b->results.forces = b->forces;
    b->results.virial = b->virial;
    b->results.atom_energies = b->atom_energies;
    b->results.atom_virials = b->atom_virials;
}

static void buffers_free(Buffers *b) {
    free(b->forces);
    free(b->atom_energies);
    free(b->atom_virials);
}

/* Nothing was written: every value still holds the sentinel. */
static int buffers_untouched(const Buffers *b) {
    size_t i;
    if (b->results.energy != SENTINEL) return 0;
    for (i = 0; i < 3 * b->n_atoms; i++) if (b->forces[i] != SENTINEL) return 0;
    for (i = 0; i < b->n_atoms; i++) if (b->atom_energies[i] != SENTINEL) return 0;
    for (i = 0; i < 9 * b->n_atoms; i++) if (b->atom_virials[i] != SENTINEL) return 0;
    for (i = 0; i < 9; i++) if (b->virial[i] != SENTINEL) return 0;
    return 1;
}

static int same_bits(const double *a, const double *b, size_t n) {
    return memcmp(a, b, n * sizeof(double)) == 0;
}

static int buffers_equal_bits(const Buffers *a, const Buffers *b) {
    return a->n_atoms == b->n_atoms && same_bits(&a->results.energy, &b->results.energy, 1) &&
           same_bits(a->forces, b->forces, 3 * a->n_atoms) && same_bits(a->virial, b->virial, 9) &&
           same_bits(a->atom_energies, b->atom_energies, a->n_atoms) &&
           same_bits(a->atom_virials, b->atom_virials, 9 * a->n_atoms);
}

/* |got - want| <= tolerance for every value (tolerance 0: identical bits). */
static void compare_array(const char *case_name, const char *what, const double *got, const double *want, size_t n,
                          double tolerance) {
    size_t i, worst = 0;
    double worst_error = 0.0;
    int bad = 0;
    for (i = 0; i < n; i++) {
        double error = fabs(got[i] - want[i]);
        int ok = tolerance == 0.0 ? memcmp(&got[i], &want[i], sizeof(double)) == 0 : error <= tolerance;
        if (!ok || error != error) {
            bad++;
        }
        if (error > worst_error || error != error) {
            worst_error = error;
            worst = i;
        }
    }
    if (report_errors) {
        printf("  %-22s %-14s max |error| = %.3g\n", case_name, what, worst_error);
    }
    CHECK(bad == 0, "%s: %s: %d of %lu values differ (tolerance %g); worst [%lu]: got %.17g, expected %.17g", case_name,
          what, bad, (unsigned long)n, tolerance, (unsigned long)worst, n ? got[worst] : 0.0, n ? want[worst] : 0.0);
}

/* Computes `c` with every output and compares with its expected values. */
static void check_case(MlffModel *model, const Case *c) {
    MlffSystem system = case_system(c);
    Buffers b;
    MlffResults energy_only = {SENTINEL, NULL, NULL, NULL, NULL};
    buffers_init(&b, c->n_atoms);
    EXPECT(mlff_model_compute(model, &system, &b.results), MLFF_OK);
    compare_array(c->name, "energy", &b.results.energy, &c->energy, 1, c->energy_tolerance);
    if (c->n_forces) compare_array(c->name, "forces", b.forces, c->forces, 3 * c->n_atoms, c->array_tolerance);
    if (c->n_virial) compare_array(c->name, "virial", b.virial, c->virial, 9, c->array_tolerance);
    if (c->n_atom_energies) {
        compare_array(c->name, "atom_energies", b.atom_energies, c->atom_energies, c->n_atoms, c->array_tolerance);
    }
    if (c->n_atom_virials) {
        compare_array(c->name, "atom_virials", b.atom_virials, c->atom_virials, 9 * c->n_atoms, c->array_tolerance);
    }
    /* NULL arrays are not computed, and the energy does not depend on what else is asked. */
    EXPECT(mlff_model_compute(model, &system, &energy_only), MLFF_OK);
    CHECK(energy_only.energy == b.results.energy, "%s: energy-only %.17g != full %.17g", c->name, energy_only.energy,
          b.results.energy);
    buffers_free(&b);
}

/* ------------------------------------------------------------- error paths */

static void check_globals(void) {
    MlffOptions options = mlff_options_default();
    const char *version = mlff_version();
    CHECK(version != NULL && version[0] != '\0', "mlff_version() is empty");
    CHECK(mlff_abi_version() == MLFF_ABI_VERSION, "library ABI %u != header ABI %u", mlff_abi_version(),
          (unsigned)MLFF_ABI_VERSION);
    CHECK(mlff_last_error() != NULL && mlff_last_error()[0] == '\0', "last error is not \"\" at start");
    CHECK(options.device == MLFF_DEVICE_AUTO, "default device %d", (int)options.device);
    CHECK(options.precision == MLFF_PRECISION_F32, "default precision %d", (int)options.precision);
    CHECK(options.device_index == 0 && options.num_threads == 0, "default index/threads");
    /* Getters and destroy take NULL. */
    CHECK(isnan(mlff_model_cutoff(NULL)), "mlff_model_cutoff(NULL) is not NaN");
    CHECK(mlff_last_error()[0] != '\0', "mlff_model_cutoff(NULL) left no message");
    CHECK(mlff_model_num_layers(NULL) == 0, "mlff_model_num_layers(NULL) != 0");
    CHECK(mlff_model_num_warnings(NULL) == 0, "mlff_model_num_warnings(NULL) != 0");
    CHECK(mlff_model_num_supported_elements(NULL) == 0, "mlff_model_num_supported_elements(NULL) != 0");
    CHECK(mlff_model_engine_description(NULL) != NULL && mlff_model_engine_description(NULL)[0] == '\0',
          "mlff_model_engine_description(NULL) is not \"\"");
    mlff_model_destroy(NULL);
}

static void check_create_errors(const char *dir, int cuda_available) {
    char path[4096];
    MlffModel *model = NULL;
    MlffOptions options = mlff_options_default();
    const int32_t bad_enums[] = {-1, 3, 7, INT32_MIN, INT32_MAX};
    size_t i;

    snprintf(path, sizeof(path), "%s/model.safetensors", dir);
    EXPECT(mlff_model_create(NULL, NULL, &model), MLFF_ERR_NULL_POINTER);
    CHECK(last_error_contains("path"), "message does not name `path`");
    EXPECT(mlff_model_create(path, NULL, NULL), MLFF_ERR_NULL_POINTER);
    CHECK(last_error_contains("out"), "message does not name `out`");
    EXPECT(mlff_model_create(NULL, &options, NULL), MLFF_ERR_NULL_POINTER);
    CHECK(model == NULL, "*out written on failure");

    snprintf(path, sizeof(path), "%s/does-not-exist.safetensors", dir);
    EXPECT(mlff_model_create(path, NULL, &model), MLFF_ERR_IO);
    CHECK(last_error_contains("does-not-exist"), "IO message does not name the file");
    EXPECT(mlff_model_create(dir, NULL, &model), MLFF_ERR_IO); /* a directory */
    snprintf(path, sizeof(path), "%s/garbage.bin", dir);
    EXPECT(mlff_model_create(path, NULL, &model), MLFF_ERR_MODEL_FORMAT);
    snprintf(path, sizeof(path), "%s/empty.bin", dir);
    EXPECT(mlff_model_create(path, NULL, &model), MLFF_ERR_MODEL_FORMAT);
    snprintf(path, sizeof(path), "%s/truncated.safetensors", dir);
    EXPECT(mlff_model_create(path, NULL, &model), MLFF_ERR_MODEL_FORMAT);
    CHECK(model == NULL, "*out written on failure");

    snprintf(path, sizeof(path), "%s/model.safetensors", dir);
    for (i = 0; i < sizeof(bad_enums) / sizeof(bad_enums[0]); i++) {
        options = mlff_options_default();
        options.device = bad_enums[i];
        EXPECT(mlff_model_create(path, &options, &model), MLFF_ERR_INVALID_ARGUMENT);
        CHECK(last_error_contains("device"), "message does not name `device`");
        options = mlff_options_default();
        options.precision = bad_enums[i];
        EXPECT(mlff_model_create(path, &options, &model), MLFF_ERR_INVALID_ARGUMENT);
        CHECK(last_error_contains("precision"), "message does not name `precision`");
    }
    options = mlff_options_default();
    options.device_index = -1;
    EXPECT(mlff_model_create(path, &options, &model), MLFF_ERR_INVALID_ARGUMENT);
    CHECK(model == NULL, "*out written on failure");

    options = mlff_options_default();
    options.device = MLFF_DEVICE_CUDA;
    if (cuda_available) {
        MlffDevice device = MLFF_DEVICE_AUTO;
        EXPECT(mlff_model_create(path, &options, &model), MLFF_OK);
        EXPECT(mlff_model_device(model, &device), MLFF_OK);
        CHECK(device == MLFF_DEVICE_CUDA, "CUDA model reports device %d", (int)device);
        mlff_model_destroy(model);
        model = NULL;
    } else {
        EXPECT(mlff_model_create(path, &options, &model), MLFF_ERR_DEVICE);
        CHECK(model == NULL, "*out written on failure");
    }
    /* AUTO never fails for lack of a GPU. */
    options = mlff_options_default();
    EXPECT(mlff_model_create(path, &options, &model), MLFF_OK);
    {
        MlffDevice device = MLFF_DEVICE_AUTO;
        EXPECT(mlff_model_device(model, &device), MLFF_OK);
        CHECK(device == (cuda_available ? MLFF_DEVICE_CUDA : MLFF_DEVICE_CPU), "AUTO model reports device %d",
              (int)device);
    }
    mlff_model_destroy(model);
}

static void check_model_queries(MlffModel *model, const Cases *cases) {
    MlffDevice device = MLFF_DEVICE_AUTO;
    MlffPrecision precision = MLFF_PRECISION_F32;
    int32_t numbers[128];
    size_t i, n;
    const char *code = NULL, *message = NULL;

    CHECK(mlff_model_cutoff(model) == cases->cutoff, "cutoff %.17g != %.17g", mlff_model_cutoff(model), cases->cutoff);
    CHECK(mlff_model_num_layers(model) == cases->num_layers, "num_layers %u != %u", mlff_model_num_layers(model),
          cases->num_layers);
    EXPECT(mlff_model_device(model, &device), MLFF_OK);
    CHECK(device == MLFF_DEVICE_CPU, "device %d != MLFF_DEVICE_CPU", (int)device);
    EXPECT(mlff_model_device(NULL, &device), MLFF_ERR_NULL_POINTER);
    EXPECT(mlff_model_device(model, NULL), MLFF_ERR_NULL_POINTER);
    {
        /* Written on success; this model runs on the CPU either way. */
        size_t n_gpus = 12345;
        EXPECT(mlff_cuda_device_count(&n_gpus), MLFF_OK);
        CHECK(n_gpus != 12345 && n_gpus < 1024, "mlff_cuda_device_count wrote %zu", n_gpus);
        EXPECT(mlff_cuda_device_count(NULL), MLFF_ERR_NULL_POINTER);
    }
    EXPECT(mlff_model_precision(model, &precision), MLFF_OK);
    CHECK(precision == MLFF_PRECISION_F64, "precision %d != MLFF_PRECISION_F64", (int)precision);
    EXPECT(mlff_model_precision(NULL, &precision), MLFF_ERR_NULL_POINTER);
    EXPECT(mlff_model_precision(model, NULL), MLFF_ERR_NULL_POINTER);
    CHECK(strlen(mlff_model_engine_description(model)) > 0, "empty engine description");

    n = mlff_model_num_supported_elements(model);
    CHECK(n == cases->n_supported, "%lu supported elements, expected %lu", (unsigned long)n,
          (unsigned long)cases->n_supported);
    for (i = 0; i < 128; i++) numbers[i] = -7;
    if (n > 0) {
        EXPECT(mlff_model_supported_elements(model, numbers, n - 1), MLFF_ERR_INVALID_ARGUMENT);
        CHECK(numbers[0] == -7, "supported elements written on failure");
    }
    EXPECT(mlff_model_supported_elements(model, NULL, 128), MLFF_ERR_NULL_POINTER);
    EXPECT(mlff_model_supported_elements(NULL, numbers, 128), MLFF_ERR_NULL_POINTER);
    EXPECT(mlff_model_supported_elements(model, numbers, 128), MLFF_OK);
    for (i = 0; i < n && i < cases->n_supported; i++) {
        CHECK(numbers[i] == cases->supported[i], "supported[%lu] = %d, expected %d", (unsigned long)i,
              (int)numbers[i], (int)cases->supported[i]);
    }
    CHECK(n >= 128 || numbers[n] == -7, "wrote past the supported elements");

    n = mlff_model_num_warnings(model);
    CHECK(n == cases->n_warnings, "%lu warnings, expected %lu", (unsigned long)n, (unsigned long)cases->n_warnings);
    for (i = 0; i < n && i < cases->n_warnings; i++) {
        EXPECT(mlff_model_warning(model, i, &code, &message), MLFF_OK);
        CHECK(code != NULL && strcmp(code, cases->warning_codes[i]) == 0, "warning %lu code \"%s\", expected \"%s\"",
              (unsigned long)i, code ? code : "(NULL)", cases->warning_codes[i]);
        CHECK(message != NULL && strlen(message) > 10, "warning %lu has no message", (unsigned long)i);
        EXPECT(mlff_model_warning(model, i, NULL, &message), MLFF_OK);
        EXPECT(mlff_model_warning(model, i, &code, NULL), MLFF_OK);
    }
    code = NULL;
    EXPECT(mlff_model_warning(model, n, &code, &message), MLFF_ERR_INVALID_ARGUMENT);
    CHECK(code == NULL, "warning code written on failure");
    EXPECT(mlff_model_warning(NULL, 0, &code, &message), MLFF_ERR_NULL_POINTER);
}

/* A valid 4-atom molecule of the test model (elements H, C, N, O). */
static const int32_t BASE_NUMBERS[4] = {6, 1, 8, 7};
static const double BASE_POSITIONS[12] = {0.0, 0.0, 0.0, 1.09, 0.0, 0.0, -0.4, 1.3, 0.1, 0.2, -0.5, 1.4};

/* `system` must fail with `expected`, leaving the outputs and energy untouched. */
static void expect_compute_failure(MlffModel *model, const MlffSystem *system, MlffStatus expected,
                                   const char *needle, int line) {
    Buffers b;
    MlffStatus status;
    buffers_init(&b, 4);
    status = mlff_model_compute(model, system, &b.results);
    expect_status(status, expected, "mlff_model_compute", line);
    checks++;
    if (!buffers_untouched(&b)) {
        failures++;
        fprintf(stderr, "FAIL line %d: outputs written by a failed compute\n", line);
    }
    checks++;
    if (needle != NULL && !last_error_contains(needle)) {
        failures++;
        fprintf(stderr, "FAIL line %d: message \"%s\" does not mention \"%s\"\n", line, mlff_last_error(), needle);
    }
    buffers_free(&b);
}
#define EXPECT_COMPUTE_FAILS(system, expected, needle) \
    expect_compute_failure(model, &(system), (expected), (needle), __LINE__)

static void check_compute_errors(MlffModel *model) {
    int32_t numbers[4];
    double positions[12];
    double cell[9] = {6.0, 0, 0, 0, 6.0, 0, 0, 0, 6.0};
    double misaligned_storage[14];
    MlffSystem base, system;
    Buffers b;
    size_t i;

    memcpy(numbers, BASE_NUMBERS, sizeof(numbers));
    memcpy(positions, BASE_POSITIONS, sizeof(positions));
    memset(&base, 0, sizeof(base));
    base.n_atoms = 4;
    base.n_local = 4;
    base.numbers = numbers;
    base.positions = positions;

    buffers_init(&b, 4);
    EXPECT(mlff_model_compute(NULL, &base, &b.results), MLFF_ERR_NULL_POINTER);
    CHECK(last_error_contains("model"), "message does not name `model`");
    EXPECT(mlff_model_compute(model, NULL, &b.results), MLFF_ERR_NULL_POINTER);
    CHECK(last_error_contains("system"), "message does not name `system`");
    EXPECT(mlff_model_compute(model, &base, NULL), MLFF_ERR_NULL_POINTER);
    CHECK(last_error_contains("results"), "message does not name `results`");
    CHECK(buffers_untouched(&b), "outputs written by a failed compute");
    buffers_free(&b);

    system = base;
    system.numbers = NULL;
    EXPECT_COMPUTE_FAILS(system, MLFF_ERR_NULL_POINTER, "numbers");
    system = base;
    system.positions = NULL;
    EXPECT_COMPUTE_FAILS(system, MLFF_ERR_NULL_POINTER, "positions");

    positions[4] = NAN;
    EXPECT_COMPUTE_FAILS(base, MLFF_ERR_INVALID_ARGUMENT, "atom 1");
    positions[4] = INFINITY;
    EXPECT_COMPUTE_FAILS(base, MLFF_ERR_INVALID_ARGUMENT, "atom 1");
    positions[4] = 0.0;

    numbers[2] = 0;
    EXPECT_COMPUTE_FAILS(base, MLFF_ERR_INVALID_ARGUMENT, "atom 2");
    numbers[2] = 150;
    EXPECT_COMPUTE_FAILS(base, MLFF_ERR_INVALID_ARGUMENT, "atom 2");
    numbers[2] = -1;
    EXPECT_COMPUTE_FAILS(base, MLFF_ERR_INVALID_ARGUMENT, "atom 2");
    numbers[2] = 26; /* Fe: within max_z but not among the model's species */
    EXPECT_COMPUTE_FAILS(base, MLFF_ERR_INVALID_ARGUMENT, "atom 2");
    numbers[2] = 8;

    system = base;
    system.n_local = 5;
    EXPECT_COMPUTE_FAILS(system, MLFF_ERR_INVALID_ARGUMENT, "n_local");

    system = base;
    system.pbc[1] = true; /* periodic without a cell */
    EXPECT_COMPUTE_FAILS(system, MLFF_ERR_INVALID_ARGUMENT, "cell");
    system.cell = cell;
    cell[4] = 0.0; /* zero second vector */
    EXPECT_COMPUTE_FAILS(system, MLFF_ERR_INVALID_ARGUMENT, "singular");
    cell[4] = 6.0;
    system.pbc[0] = system.pbc[1] = system.pbc[2] = true;
    memcpy(&cell[3], &cell[0], 3 * sizeof(double)); /* parallel vectors: zero volume */
    EXPECT_COMPUTE_FAILS(system, MLFF_ERR_INVALID_ARGUMENT, "singular");
    cell[3] = 0.0;
    cell[4] = NAN;
    EXPECT_COMPUTE_FAILS(system, MLFF_ERR_INVALID_ARGUMENT, "cell");
    cell[4] = 6.0;

    /* Two atoms at the same point. */
    positions[9] = positions[3];
    positions[10] = positions[4];
    positions[11] = positions[5];
    EXPECT_COMPUTE_FAILS(base, MLFF_ERR_INVALID_ARGUMENT, "same position");
    memcpy(positions, BASE_POSITIONS, sizeof(positions));

    /* A bool that is neither 0 nor 1 (written through a byte, as a foreign caller could). */
    system = base;
    ((unsigned char *)system.pbc)[2] = 2;
    EXPECT_COMPUTE_FAILS(system, MLFF_ERR_INVALID_ARGUMENT, "pbc");

    /* n_atoms so large that 3 * n_atoms doubles cannot exist. */
    system = base;
    system.n_atoms = SIZE_MAX / 2;
    system.n_local = 1;
    EXPECT_COMPUTE_FAILS(system, MLFF_ERR_INVALID_ARGUMENT, "n_atoms");

    /* A positions pointer that is not aligned for double. */
    system = base;
    memcpy((char *)misaligned_storage + 1, BASE_POSITIONS, sizeof(BASE_POSITIONS));
    system.positions = (const double *)(const void *)((const char *)misaligned_storage + 1);
    EXPECT_COMPUTE_FAILS(system, MLFF_ERR_INVALID_ARGUMENT, "aligned");

    /* A misaligned output pointer is caught before anything is computed. */
    buffers_init(&b, 4);
    b.results.virial = (double *)(void *)((char *)b.virial + 1);
    EXPECT(mlff_model_compute(model, &base, &b.results), MLFF_ERR_INVALID_ARGUMENT);
    b.results.virial = b.virial;
    CHECK(buffers_untouched(&b), "outputs written by a failed compute");

    /* Zero atoms: NULL arrays are fine and the energy is 0. */
    memset(&system, 0, sizeof(system));
    b.results.forces = b.results.atom_energies = b.results.atom_virials = NULL;
    EXPECT(mlff_model_compute(model, &system, &b.results), MLFF_OK);
    CHECK(b.results.energy == 0.0, "energy of no atoms is %g", b.results.energy);

    /* After all that, a valid call works and clears the last error. */
    EXPECT(mlff_model_compute(model, &base, &b.results), MLFF_OK);
    CHECK(isfinite(b.results.energy), "energy is not finite");
    for (i = 0; i < 9; i++) CHECK(isfinite(b.virial[i]), "virial[%lu] not finite", (unsigned long)i);
    buffers_free(&b);
}

/* ------------------------------------------------------------------- batch */

#define BATCH 64

/* 64 structures made from the cases (atoms nudged so that all differ), computed
 * one by one and in one batch: identical bits. */
static void check_batch(MlffModel *model, const Cases *cases) {
    MlffSystem systems[BATCH];
    double *positions[BATCH];
    Buffers single[BATCH], batched[BATCH];
    MlffResults results[BATCH];
    size_t k, i, usable[64], n_usable = 0;
    int32_t *bad_numbers;

    EXPECT(mlff_model_compute_batch(model, NULL, 0, NULL), MLFF_OK);
    EXPECT(mlff_model_compute_batch(NULL, NULL, 0, NULL), MLFF_ERR_NULL_POINTER);
    for (k = 0; k < cases->n_cases && n_usable < 64; k++) {
        if (cases->cases[k].n_atoms > 0) usable[n_usable++] = k;
    }
    if (n_usable == 0) {
        fprintf(stderr, "note: no cases, batch comparison not run\n");
        return;
    }
    for (k = 0; k < BATCH; k++) {
        const Case *c = &cases->cases[usable[k % n_usable]];
        systems[k] = case_system(c);
        positions[k] = checked_calloc(3 * c->n_atoms, sizeof(double));
        for (i = 0; i < 3 * c->n_atoms; i++) {
            /* Shifts a few picometres, different per structure and atom. */
            positions[k][i] = c->positions[i] + 0.002 * (double)((k * 7 + i * 3) % 11) - 0.01;
        }
        systems[k].positions = positions[k];
        buffers_init(&single[k], c->n_atoms);
        buffers_init(&batched[k], c->n_atoms);
        if (k % 5 == 3) { /* some structures ask for less */
            single[k].results.atom_virials = batched[k].results.atom_virials = NULL;
            single[k].results.atom_energies = batched[k].results.atom_energies = NULL;
        }
        results[k] = batched[k].results;
    }
    for (k = 0; k < BATCH; k++) {
        EXPECT(mlff_model_compute(model, &systems[k], &single[k].results), MLFF_OK);
    }

    EXPECT(mlff_model_compute_batch(model, NULL, BATCH, results), MLFF_ERR_NULL_POINTER);
    EXPECT(mlff_model_compute_batch(model, systems, BATCH, NULL), MLFF_ERR_NULL_POINTER);
    /* One bad structure fails the whole batch and nothing is written. */
    {
        const MlffSystem saved = systems[37];
        bad_numbers = checked_calloc(systems[37].n_atoms, sizeof(int32_t));
        memcpy(bad_numbers, systems[37].numbers, systems[37].n_atoms * sizeof(int32_t));
        bad_numbers[0] = 0;
        systems[37].numbers = bad_numbers;
        EXPECT(mlff_model_compute_batch(model, systems, BATCH, results), MLFF_ERR_INVALID_ARGUMENT);
        CHECK(last_error_contains("37"), "batch message does not name structure 37");
        systems[37] = saved;
        free(bad_numbers);
        systems[11].numbers = NULL;
        EXPECT(mlff_model_compute_batch(model, systems, BATCH, results), MLFF_ERR_NULL_POINTER);
        CHECK(last_error_contains("systems[11]"), "batch message does not name systems[11]");
        systems[11].numbers = cases->cases[usable[11 % n_usable]].numbers;
        for (k = 0; k < BATCH; k++) {
            batched[k].results = results[k];
            CHECK(buffers_untouched(&batched[k]), "failed batch wrote results[%lu]", (unsigned long)k);
        }
    }

    EXPECT(mlff_model_compute_batch(model, systems, BATCH, results), MLFF_OK);
    for (k = 0; k < BATCH; k++) {
        batched[k].results = results[k];
        CHECK(buffers_equal_bits(&single[k], &batched[k]), "batch result %lu differs from the single call",
              (unsigned long)k);
        buffers_free(&single[k]);
        buffers_free(&batched[k]);
        free(positions[k]);
    }
}

/* ----------------------------------------------------------------- threads */

typedef struct ThreadJob {
    const char *path;
    const Case *c;
    double energy;
    int ok;
    int error_isolated;
} ThreadJob;

static void *thread_main(void *argument) {
    ThreadJob *job = argument;
    MlffModel *model = NULL;
    MlffOptions options = mlff_options_default();
    MlffSystem system = case_system(job->c);
    MlffResults results = {0.0, NULL, NULL, NULL, NULL};
    int i;
    options.device = MLFF_DEVICE_CPU;
    options.precision = MLFF_PRECISION_F64;
    job->ok = mlff_model_create(job->path, &options, &model) == MLFF_OK;
    /* Another thread's failures never show up here. */
    job->error_isolated = mlff_last_error()[0] == '\0';
    for (i = 0; job->ok && i < 20; i++) {
        job->ok = mlff_model_compute(model, &system, &results) == MLFF_OK;
        job->error_isolated = job->error_isolated && mlff_last_error()[0] == '\0';
    }
    job->energy = results.energy;
    mlff_model_destroy(model);
    return NULL;
}

/* Different handles on different threads at once give the single-thread results. */
static void check_threads(const char *model_path, const Cases *cases) {
    pthread_t threads[4];
    ThreadJob jobs[4];
    size_t t;
    if (cases->n_cases == 0) return;
    for (t = 0; t < 4; t++) {
        jobs[t].path = model_path;
        jobs[t].c = &cases->cases[t % cases->n_cases];
        jobs[t].ok = 0;
        CHECK(pthread_create(&threads[t], NULL, thread_main, &jobs[t]) == 0, "pthread_create");
    }
    /* Failures on this thread meanwhile. */
    for (t = 0; t < 50; t++) {
        MlffModel *none = NULL;
        EXPECT(mlff_model_create(NULL, NULL, &none), MLFF_ERR_NULL_POINTER);
    }
    for (t = 0; t < 4; t++) {
        pthread_join(threads[t], NULL);
        CHECK(jobs[t].ok, "thread %lu failed", (unsigned long)t);
        CHECK(jobs[t].error_isolated, "thread %lu saw another thread's error", (unsigned long)t);
        compare_array(jobs[t].c->name, "energy (threaded)", &jobs[t].energy, &jobs[t].c->energy, 1,
                      jobs[t].c->energy_tolerance);
    }
}

/* -------------------------------------------------------------------- main */

static MlffModel *open_f64(const char *path) {
    MlffModel *model = NULL;
    MlffOptions options = mlff_options_default();
    options.device = MLFF_DEVICE_CPU;
    options.precision = MLFF_PRECISION_F64;
    EXPECT(mlff_model_create(path, &options, &model), MLFF_OK);
    if (model == NULL) {
        fprintf(stderr, "cannot open %s: %s\n", path, mlff_last_error());
        exit(1);
    }
    return model;
}

static int finish(const char *mode) {
    if (failures == 0) {
        printf("test_mlff %s: all %d checks passed\n", mode, checks);
        return 0;
    }
    printf("test_mlff %s: %d of %d checks FAILED\n", mode, failures, checks);
    return 1;
}

static int run_check(const char *dir, int cuda_available) {
    char path[4096];
    Cases cases;
    MlffModel *model;
    size_t k;

    snprintf(path, sizeof(path), "%s/cases.txt", dir);
    load_cases(path, &cases);
    check_globals();
    check_create_errors(dir, cuda_available);

    snprintf(path, sizeof(path), "%s/model.safetensors", dir);
    model = open_f64(path);
    check_model_queries(model, &cases);
    check_compute_errors(model);
    for (k = 0; k < cases.n_cases; k++) {
        check_case(model, &cases.cases[k]);
    }
    check_batch(model, &cases);
    mlff_model_destroy(model);
    check_threads(path, &cases);
    free_cases(&cases);
    return finish("check");
}

static int run_fixtures(const char *model_path, const char *cases_path) {
    Cases cases;
    MlffModel *model;
    size_t k;
    load_cases(cases_path, &cases);
    model = open_f64(model_path);
    report_errors = 1;
    for (k = 0; k < cases.n_cases; k++) {
        check_case(model, &cases.cases[k]);
    }
    printf("compared %lu fixtures of %s\n", (unsigned long)cases.n_cases, model_path);
    mlff_model_destroy(model);
    free_cases(&cases);
    return finish("fixtures");
}

/* Threads of this process (Linux), or -1 where /proc is not available. */
static int count_threads(void) {
    DIR *dir = opendir("/proc/self/task");
    struct dirent *entry;
    int count = 0;
    if (dir == NULL) return -1;
    while ((entry = readdir(dir)) != NULL) {
        if (entry->d_name[0] != '.') count++;
    }
    closedir(dir);
    return count;
}

/* Waits (up to ~20 s, valgrind is slow) until at most `limit` threads remain. */
static int wait_for_threads(int limit) {
    struct timespec pause = {0, 50 * 1000 * 1000};
    int waited, count = count_threads();
    for (waited = 0; count > limit && waited < 400; waited++) {
        nanosleep(&pause, NULL);
        count = count_threads();
    }
    return count;
}

/* Creating and destroying models does not accumulate threads: after 30 cycles
 * there are no more threads than after one. */
static void check_threads_are_released(const char *path, const MlffSystem *system) {
    int after_one = -1, after_many, cycle;
    for (cycle = 0; cycle < 31; cycle++) {
        MlffModel *model = open_f64(path);
        MlffResults results = {0.0, NULL, NULL, NULL, NULL};
        EXPECT(mlff_model_compute(model, system, &results), MLFF_OK);
        mlff_model_destroy(model);
        if (cycle == 0) {
            after_one = wait_for_threads(1);
        }
    }
    if (after_one < 0) {
        fprintf(stderr, "note: no /proc/self/task, thread release not checked\n");
        return;
    }
    after_many = wait_for_threads(after_one);
    CHECK(after_many <= after_one, "%d threads after 31 create/destroy cycles, %d after one", after_many, after_one);
    printf("threads after 1 and 31 create/destroy cycles: %d, %d\n", after_one, after_many);
}

/* Many computes with all outputs on a small system, errors in between, and
 * models created and destroyed: run under valgrind to find leaks. */
static int run_loop(const char *dir, long iterations) {
    char path[4096], garbage[4096];
    MlffModel *model;
    MlffSystem system;
    Buffers b;
    double first_energy = 0.0;
    long i;

    snprintf(path, sizeof(path), "%s/model.safetensors", dir);
    snprintf(garbage, sizeof(garbage), "%s/garbage.bin", dir);
    model = open_f64(path);
    memset(&system, 0, sizeof(system));
    system.n_atoms = 4;
    system.n_local = 4;
    system.numbers = BASE_NUMBERS;
    system.positions = BASE_POSITIONS;
    buffers_init(&b, 4);
    for (i = 0; i < iterations; i++) {
        MlffStatus status = mlff_model_compute(model, &system, &b.results);
        if (status != MLFF_OK) {
            CHECK(0, "iteration %ld: %s", i, status_name(status));
            break;
        }
        if (i == 0) first_energy = b.results.energy;
        if (b.results.energy != first_energy) {
            CHECK(0, "iteration %ld: energy %.17g changed from %.17g", i, b.results.energy, first_energy);
            break;
        }
        if (i % 500 == 250) {
            MlffModel *other = NULL;
            MlffSystem broken = system;
            broken.n_local = 9;
            EXPECT(mlff_model_compute(model, &broken, &b.results), MLFF_ERR_INVALID_ARGUMENT);
            EXPECT(mlff_model_create(garbage, NULL, &other), MLFF_ERR_MODEL_FORMAT);
            EXPECT(mlff_model_compute_batch(model, &system, 1, &b.results), MLFF_OK);
        }
        if (i % 2500 == 1000) {
            mlff_model_destroy(model);
            model = open_f64(path);
        }
    }
    buffers_free(&b);
    mlff_model_destroy(model);
    printf("%ld computes done\n", iterations);
    check_threads_are_released(path, &system);
    return finish("loop");
}

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "check") == 0) {
        return run_check(argv[2], atoi(argv[3]));
    }
    if (argc == 4 && strcmp(argv[1], "fixtures") == 0) {
        return run_fixtures(argv[2], argv[3]);
    }
    if (argc == 4 && strcmp(argv[1], "loop") == 0) {
        return run_loop(argv[2], atol(argv[3]));
    }
    fprintf(stderr, "usage: %s check DIR CUDA_AVAILABLE | fixtures MODEL CASES | loop DIR N\n", argv[0]);
    return 2;
}
