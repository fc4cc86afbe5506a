/* (being written for the containers issue, #5) */
#ifndef PY_ABSTRACT_H
#define PY_ABSTRACT_H

#ifndef Py_OBJECT_H
#  error "include Python.h"
#endif

#endif /* PY_ABSTRACT_H */
