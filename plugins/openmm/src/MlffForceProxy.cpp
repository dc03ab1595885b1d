#include "mlff_openmm/MlffForceProxy.h"
#include "mlff_openmm/MlffForce.h"

#include "openmm/OpenMMException.h"
#include "openmm/serialization/SerializationNode.h"

#include <memory>

using namespace mlff_openmm;
using OpenMM::OpenMMException;
using OpenMM::SerializationNode;

namespace {

// 2: useDevicePath added (version 1 files read with the default, true).
constexpr int FORMAT_VERSION = 2;

void writeList(SerializationNode& parent, const char* listName, const char* itemName, const std::vector<int>& values) {
    SerializationNode& list = parent.createChildNode(listName);
    for (int value : values)
        list.createChildNode(itemName).setIntProperty("v", value);
}

std::vector<int> readList(const SerializationNode& parent, const char* listName) {
    std::vector<int> values;
    for (const SerializationNode& item : parent.getChildNode(listName).getChildren())
        values.push_back(item.getIntProperty("v"));
    return values;
}

} // namespace

MlffForceProxy::MlffForceProxy() : SerializationProxy("MlffForce") {
}

void MlffForceProxy::serialize(const void* object, SerializationNode& node) const {
    const MlffForce& force = *reinterpret_cast<const MlffForce*>(object);
    node.setIntProperty("version", FORMAT_VERSION);
    node.setStringProperty("modelPath", force.getModelPath());
    node.setStringProperty("device", force.getDevice());
    node.setStringProperty("precision", force.getPrecision());
    node.setIntProperty("deviceIndex", force.getDeviceIndex());
    node.setIntProperty("numThreads", force.getNumThreads());
    node.setBoolProperty("usesPeriodic", force.usesPeriodicBoundaryConditions());
    node.setBoolProperty("useDevicePath", force.getUseDevicePath());
    node.setIntProperty("forceGroup", force.getForceGroup());
    node.setStringProperty("name", force.getName());
    writeList(node, "Numbers", "Number", force.getNumbers());
    writeList(node, "Atoms", "Atom", force.getAtoms());
}

void* MlffForceProxy::deserialize(const SerializationNode& node) const {
    const int version = node.getIntProperty("version");
    if (version < 1 || version > FORMAT_VERSION)
        throw OpenMMException("MlffForce: unsupported serialization version " + std::to_string(version) +
                              " (this plugin reads versions 1 to " + std::to_string(FORMAT_VERSION) + ")");
    auto force = std::make_unique<MlffForce>(node.getStringProperty("modelPath"), readList(node, "Numbers"),
                                             readList(node, "Atoms"), node.getStringProperty("device"),
                                             node.getStringProperty("precision"));
    force->setDeviceIndex(node.getIntProperty("deviceIndex"));
    force->setNumThreads(node.getIntProperty("numThreads"));
    force->setUsesPeriodicBoundaryConditions(node.getBoolProperty("usesPeriodic"));
    if (version >= 2)
        force->setUseDevicePath(node.getBoolProperty("useDevicePath"));
    force->setForceGroup(node.getIntProperty("forceGroup"));
    force->setName(node.getStringProperty("name"));
    return force.release();
}

// Registers the proxy when the library is loaded, so XmlSerializer knows MlffForce
// as soon as C++ links this library or Python imports mlff_openmm.
extern "C" __attribute__((constructor)) void mlffOpenMMRegisterSerializationProxies() {
    OpenMM::SerializationProxy::registerProxy(typeid(MlffForce), new MlffForceProxy());
}
