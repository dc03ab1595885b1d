// SWIG interface of the mlff OpenMM plugin. Builds the extension module
// mlff_openmm._binding; the package's __init__.py re-exports it.
%module(package="mlff_openmm") binding

// OpenMM's own SWIG declarations, so MlffForce is an openmm.Force that
// System.addForce accepts (needs SWIG >= 4.4, the version OpenMM's wheel uses).
%import(module="openmm") "swig/OpenMMSwigHeaders.i"
%include "swig/typemaps.i"
%include <std_string.i>

%{
#include "mlff_openmm/MlffForce.h"
#include "mlff.h"
#include "OpenMM.h"
#include "OpenMMAmoeba.h"
#include "OpenMMDrude.h"
#include "openmm/RPMDIntegrator.h"
#include "openmm/RPMDMonteCarloBarostat.h"

#include <climits>
#include <exception>
#include <vector>

// Raises openmm.OpenMMException (the class OpenMM's own module raises) with the message.
static void mlffRaiseOpenMMException(const char* message) {
    PyObject* module = PyImport_ImportModule("openmm");
    PyObject* type = module ? PyObject_GetAttrString(module, "OpenMMException") : NULL;
    PyErr_Clear();
    PyErr_SetString(type ? type : PyExc_Exception, message);
    Py_XDECREF(type);
    Py_XDECREF(module);
}

// Any sequence of integers (list, tuple, numpy array) -> std::vector<int>.
static bool mlffSequenceToInts(PyObject* input, std::vector<int>& out) {
    PyObject* sequence = PySequence_Fast(input, "expected a sequence of integers");
    if (!sequence)
        return false;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(sequence);
    out.clear();
    out.reserve(n);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject* index = PyNumber_Index(PySequence_Fast_GET_ITEM(sequence, i));
        if (!index) {
            PyErr_Format(PyExc_TypeError, "item %zd of the sequence is not an integer", i);
            Py_DECREF(sequence);
            return false;
        }
        long value = PyLong_AsLong(index);
        Py_DECREF(index);
        if ((value == -1 && PyErr_Occurred()) || value < INT_MIN || value > INT_MAX) {
            PyErr_Clear();
            PyErr_Format(PyExc_OverflowError, "item %zd of the sequence does not fit a 32-bit integer", i);
            Py_DECREF(sequence);
            return false;
        }
        out.push_back(static_cast<int>(value));
    }
    Py_DECREF(sequence);
    return true;
}
%}

%exception {
    try {
        $action
    } catch (std::exception& e) {
        mlffRaiseOpenMMException(e.what());
        SWIG_fail;
    }
}

%typemap(in) const std::vector<int>& (std::vector<int> values) {
    if (!mlffSequenceToInts($input, values))
        SWIG_fail;
    $1 = &values;
}
%typemap(typecheck, precedence=SWIG_TYPECHECK_INT32_ARRAY) const std::vector<int>& {
    $1 = PySequence_Check($input) ? 1 : 0;
}
%typemap(out) const std::vector<int>& {
    $result = PyList_New($1->size());
    for (size_t i = 0; i < $1->size(); i++)
        PyList_SET_ITEM($result, i, PyLong_FromLong((*$1)[i]));
}

%constant double KJ_PER_MOL_PER_EV = mlff_openmm::KJ_PER_MOL_PER_EV;
%constant double ANGSTROM_PER_NM = mlff_openmm::ANGSTROM_PER_NM;

%inline %{
/** The version string of the mlff library this plugin runs. */
std::string library_version() {
    const char* version = mlff_version();
    return version ? version : "";
}
%}

// Keyword arguments with Python defaults; paths (str or os.PathLike) and integer
// sequences (lists, numpy arrays) are normalised before reaching C++.
%feature("shadow") mlff_openmm::MlffForce::MlffForce %{
def __init__(self, model_path, numbers, atoms=None, device="auto", precision="f32"):
    import os
    _binding.MlffForce_swiginit(self, $action(os.fspath(model_path), numbers,
                                              [] if atoms is None else atoms, device, precision))
%}

// The wrapper cast() returns does not own the C++ object: keep the original
// Python object alive as long as the cast one, e.g. for
// MlffForce.cast(XmlSerializer.deserialize(xml)).
%pythonappend mlff_openmm::MlffForce::cast %{
    val._mlff_owner = force
%}

%feature("docstring") mlff_openmm::MlffForce "
MlffForce(model_path, numbers, atoms=None, device=\"auto\", precision=\"f32\")

An OpenMM Force that evaluates an mlff model (distilled PaiNN-style student).

model_path: the model file, opened when a Context is created (one handle per Context).
numbers:    atomic number of each model particle: one per System particle, or one
            per entry of atoms.
atoms:      indices of the particles the model sees (ML/MM); None = all particles.
            Other particles get no force from this Force.
device:     \"auto\", \"cpu\" or \"cuda\".
precision:  \"f32\", \"f64\" or \"mixed\".

Call setUsesPeriodicBoundaryConditions(True) to use the Context's box vectors.
On the CUDA platform the model runs on OpenMM's device arrays (positions, forces)
in OpenMM's CUDA context, with no copy through the host (the device path);
setUseDevicePath(False) computes through the host instead, as on other platforms.
getComputePath(context) says which one a Context uses (\"device\" or \"host\").
Library errors (missing file, unsupported element, ...) raise openmm.OpenMMException
carrying the library's message. After XmlSerializer.deserialize, use MlffForce.cast(force).
";

namespace mlff_openmm {

class MlffForce : public OpenMM::Force {
public:
    MlffForce(const std::string& modelPath, const std::vector<int>& numbers, const std::vector<int>& atoms,
              const std::string& device, const std::string& precision);
    const std::string& getModelPath() const;
    const std::vector<int>& getNumbers() const;
    const std::vector<int>& getAtoms() const;
    const std::string& getDevice() const;
    const std::string& getPrecision() const;
    int getDeviceIndex() const;
    void setDeviceIndex(int index);
    int getNumThreads() const;
    void setNumThreads(int threads);
    void setUsesPeriodicBoundaryConditions(bool periodic);
    bool usesPeriodicBoundaryConditions() const;
    void setUseDevicePath(bool use);
    bool getUseDevicePath() const;
    std::string getComputePath(OpenMM::Context& context) const;

    %extend {
        /** Returns force (an openmm.Force, e.g. from XmlSerializer or System.getForce) as an MlffForce. */
        static mlff_openmm::MlffForce& cast(OpenMM::Force& force) {
            mlff_openmm::MlffForce* result = dynamic_cast<mlff_openmm::MlffForce*>(&force);
            if (result == NULL)
                throw OpenMM::OpenMMException("MlffForce.cast: the force is not an MlffForce");
            return *result;
        }
        /** True when force is an MlffForce. */
        static bool isinstance(OpenMM::Force& force) {
            return dynamic_cast<mlff_openmm::MlffForce*>(&force) != NULL;
        }
    }
};

}
