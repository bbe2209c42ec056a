# The part of gensim 4's gensim/models/word2vec_inner.pxd that deepdist/_word2vec_inner.pyx calls: its
# training kernels and its random draw, declared exactly as gensim declares them (gensim 4.3 and 4.4 alike).
#
# Why a copy of five declarations, not a cimport of gensim's own file: a cimport imports every C variable
# that file declares, and Cython checks each one's type by its printed form, which changes between Cython
# versions (gensim 4.4's wheel prints its EXP_TABLE as "REAL_t [0x3E8]", Cython 3.1 as "REAL_t [1000]"), so
# a module cimporting it fails to import. Declared here under the same module name, the functions are
# imported from gensim's module just the same, each still checked against its signature at import.
# It also keeps gensim out of deepdist's build requirements.
cimport numpy as np

ctypedef np.float32_t REAL_t

cdef unsigned long long random_int32(unsigned long long *next_random) noexcept nogil

cdef void w2v_fast_sentence_sg_hs(
    const np.uint32_t *word_point, const np.uint8_t *word_code, const int codelen,
    REAL_t *syn0, REAL_t *syn1, const int size,
    const np.uint32_t word2_index, const REAL_t alpha, REAL_t *work, REAL_t *words_lockf,
    const np.uint32_t lockf_len, const int _compute_loss, REAL_t *_running_training_loss_param) noexcept nogil

cdef unsigned long long w2v_fast_sentence_sg_neg(
    const int negative, np.uint32_t *cum_table, unsigned long long cum_table_len,
    REAL_t *syn0, REAL_t *syn1neg, const int size, const np.uint32_t word_index,
    const np.uint32_t word2_index, const REAL_t alpha, REAL_t *work,
    unsigned long long next_random, REAL_t *words_lockf,
    const np.uint32_t lockf_len, const int _compute_loss, REAL_t *_running_training_loss_param) noexcept nogil

cdef void w2v_fast_sentence_cbow_hs(
    const np.uint32_t *word_point, const np.uint8_t *word_code, int *codelens,
    REAL_t *neu1, REAL_t *syn0, REAL_t *syn1, const int size,
    const np.uint32_t *indexes, const REAL_t alpha, REAL_t *work,
    int i, int j, int k, int cbow_mean, REAL_t *words_lockf,
    const np.uint32_t lockf_len, const int _compute_loss, REAL_t *_running_training_loss_param) noexcept nogil

cdef unsigned long long w2v_fast_sentence_cbow_neg(
    const int negative, np.uint32_t *cum_table, unsigned long long cum_table_len, int *codelens,
    REAL_t *neu1, REAL_t *syn0, REAL_t *syn1neg, const int size,
    const np.uint32_t *indexes, const REAL_t alpha, REAL_t *work,
    int i, int j, int k, int cbow_mean, unsigned long long next_random, REAL_t *words_lockf,
    const np.uint32_t lockf_len, const int _compute_loss, REAL_t *_running_training_loss_param) noexcept nogil
