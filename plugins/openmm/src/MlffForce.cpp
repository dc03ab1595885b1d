#include "mlff_openmm/MlffForce.h"
#include "mlff_openmm/internal/MlffForceImpl.h"

#include "openmm/OpenMMException.h"

#include <set>

using namespace mlff_openmm;
using OpenMM::OpenMMException;

namespace {

void checkOneOf(const char* what, const std::string& value, std::initializer_list<const char*> allowed) {
    std::string list;
    for (const char* name : allowed) {
        if (value == name)
            return;
        list += list.empty() ? "" : ", ";
        list += std::string("\"") + name + "\"";
    }
    throw OpenMMException("MlffForce: unknown " + std::string(what) + " \"" + value + "\" (expected one of " + list + ")");
}

} // namespace

MlffForce::MlffForce(const std::string& modelPath, const std::vector<int>& numbers, const std::vector<int>& atoms,
                     const std::string& device, const std::string& precision)
    : modelPath(modelPath), numbers(numbers), atoms(atoms), device(device), precision(precision) {
    checkOneOf("device", device, {"auto", "cpu", "cuda"});
    checkOneOf("precision", precision, {"f32", "f64", "mixed"});
    if (numbers.empty())
        throw OpenMMException("MlffForce: numbers is empty (one atomic number per model particle is needed)");
    if (!atoms.empty()) {
        if (atoms.size() != numbers.size())
            throw OpenMMException("MlffForce: " + std::to_string(numbers.size()) + " atomic numbers for " +
                                  std::to_string(atoms.size()) + " particles in atoms (need one per particle)");
        std::set<int> seen;
        for (size_t i = 0; i < atoms.size(); i++) {
            if (atoms[i] < 0)
                throw OpenMMException("MlffForce: atoms[" + std::to_string(i) + "] = " + std::to_string(atoms[i]) +
                                      " is negative");
            if (!seen.insert(atoms[i]).second)
                throw OpenMMException("MlffForce: particle " + std::to_string(atoms[i]) +
                                      " appears twice in atoms");
        }
    }
}

void MlffForce::setDeviceIndex(int index) {
    if (index < 0)
        throw OpenMMException("MlffForce: device index " + std::to_string(index) + " is negative");
    deviceIndex = index;
}

void MlffForce::setNumThreads(int threads) {
    if (threads < 0)
        throw OpenMMException("MlffForce: number of threads " + std::to_string(threads) + " is negative");
    numThreads = threads;
}

std::string MlffForce::getComputePath(OpenMM::Context& context) const {
    const MlffForceImpl* impl = dynamic_cast<const MlffForceImpl*>(&getImplInContext(context));
    if (impl == nullptr)
        throw OpenMMException("MlffForce.getComputePath: this force's implementation in the context is not an MlffForceImpl");
    return impl->usesDevicePath() ? "device" : "host";
}

OpenMM::ForceImpl* MlffForce::createImpl() const {
    return new MlffForceImpl(*this);
}
