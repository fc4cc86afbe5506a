/* A minimal PyConfig / PyStatus (CPython's Include/cpython/initconfig.h).
 *
 * ftrt has no evaluator, import system or path configuration, so PyConfig
 * carries only what the runtime uses; the names and the calling pattern are
 * CPython's:
 *
 *     PyConfig config;
 *     PyConfig_InitPythonConfig(&config);
 *     config.install_signal_handlers = 0;
 *     PyStatus status = Py_InitializeFromConfig(&config);
 *     PyConfig_Clear(&config);
 *     if (PyStatus_Exception(status)) Py_ExitStatusException(status);
 */
#ifndef Py_CPYTHON_INITCONFIG_H
#define Py_CPYTHON_INITCONFIG_H

#include "../pyport.h"

typedef struct {
    enum { _PyStatus_TYPE_OK = 0, _PyStatus_TYPE_ERROR = 1, _PyStatus_TYPE_EXIT = 2 } _type;
    const char *func;       /* the function that failed, or NULL */
    const char *err_msg;    /* static string, or NULL */
    int exitcode;
} PyStatus;

PyAPI_FUNC(PyStatus) PyStatus_Ok(void);
PyAPI_FUNC(PyStatus) PyStatus_Error(const char *err_msg);
PyAPI_FUNC(PyStatus) PyStatus_NoMemory(void);
PyAPI_FUNC(PyStatus) PyStatus_Exit(int exitcode);
PyAPI_FUNC(int) PyStatus_IsError(PyStatus err);
PyAPI_FUNC(int) PyStatus_IsExit(PyStatus err);
PyAPI_FUNC(int) PyStatus_Exception(PyStatus err);
/* Print the error and exit (with the exit code for an "exit" status). */
PyAPI_FUNC(void) _Py_NO_RETURN Py_ExitStatusException(PyStatus err);

typedef struct PyConfig {
    int _config_init;             /* set by PyConfig_Init*Config */
    int isolated;
    int use_environment;
    int install_signal_handlers;  /* recorded; ftrt installs no handlers */
    /* GIL build: the switch interval in microseconds (0 = default 5000). */
    unsigned long switch_interval_us;
} PyConfig;

PyAPI_FUNC(void) PyConfig_InitPythonConfig(PyConfig *config);
PyAPI_FUNC(void) PyConfig_InitIsolatedConfig(PyConfig *config);
PyAPI_FUNC(void) PyConfig_Clear(PyConfig *config);

#endif /* Py_CPYTHON_INITCONFIG_H */
